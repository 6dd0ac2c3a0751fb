package memstore

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Garbage collection's condemnations (meta.CollectorWriter): a map of the
// state, so that a condemnation and a reference, each in a transaction
// (one at a time), never commit unseen by each other.

func (r reader) Condemned(_ context.Context, id resource.ID) (bool, error) {
	_, ok := r.st().condemned[id]
	return ok, nil
}

func (r reader) CollectorEpoch(context.Context) (int64, error) { return r.st().epoch, nil }

func (r reader) Condemnations(_ context.Context, before time.Time, limit int) ([]meta.Condemnation, error) {
	var out []meta.Condemnation
	for id, at := range r.st().condemned {
		if at.Before(before) {
			out = append(out, meta.Condemnation{ID: id, At: at})
		}
	}
	slices.SortFunc(out, func(a, b meta.Condemnation) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (t *txn) Condemn(ctx context.Context, id resource.ID, at time.Time) (bool, error) {
	if _, ok := t.st.condemned[id]; ok {
		return false, nil
	}
	if ref, err := t.Referenced(ctx, id); err != nil || ref {
		return false, err
	}
	own(t.owned, &t.st.condemned)[id] = at
	t.st.epoch++
	return true, nil
}

func (t *txn) Release(_ context.Context, id resource.ID) error {
	if _, ok := t.st.condemned[id]; ok {
		delete(own(t.owned, &t.st.condemned), id)
		t.st.epoch++
	}
	return nil
}

// refsNotCondemned fails with a *meta.CondemnedError when one of refs is
// condemned, before anything is written.
func (t *txn) refsNotCondemned(refs []meta.Ref) error {
	for _, r := range refs {
		if _, ok := t.st.condemned[r.ID]; ok {
			return &meta.CondemnedError{ID: r.ID}
		}
	}
	return nil
}
