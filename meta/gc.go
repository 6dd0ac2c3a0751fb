package meta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pullmail/pullmail/resource"
)

// Garbage collection of resources, and why it cannot lose a blob.
//
// A resource store is not transactional, and a resource named by its
// digest is stored once whoever stores it: so "remove it if nothing
// references it" cannot be one step. Checking, then removing, loses the
// bytes of an upload of the same digest that lands between the two (its
// Put replaces the blob, then the removal takes it); sparing blobs by their
// modification time only narrows that window and trusts clocks.
//
// Instead the collector condemns a resource in a transaction of the
// metadata store (Condemn: only if no upload and no message references it;
// the condemnation is a row), removes the blob, then releases it (Release)
// in another. Every write that would make the resource referenced again
// (AddUpload, and InsertMessage or UpdateMessage naming it) fails with a
// CondemnedError while the condemnation stands. That covers a writer whose
// transaction overlaps the removal, but not one whose Put lands inside the
// condemnation and whose transaction comes after the release: the removal
// took its bytes, and nothing stands any more. So each condemnation and
// each release also advances a counter, CollectorEpoch, and a writer that
// stores bytes reads it before its Put (at a moment when the resource is
// not condemned) and checks in the transaction that references them that
// it has not moved (CheckStored). The store's transactions are
// serializable, so for every writer exactly one of these happens:
//
//   - its transaction commits before the condemnation: the collector sees
//     the reference and spares the resource; or
//   - it commits after the condemnation (before or after the release) and
//     sees it, as the condemnation or as a moved counter: the writer fails,
//     waits for the release (no removal of the collector's is then under
//     way), reads the counter again, checks that the bytes are stored
//     (storing them again if they went), and runs its transaction again.
//
// So a committed reference always finds its bytes stored, and "condemned"
// implies "unreferenced". No time of a blob is trusted. Writes that only
// reference bytes already referenced (a local delivery, a draft naming
// what its author holds) need no counter: a referenced resource cannot be
// condemned. A collector that dies between condemning and releasing leaves
// condemnations behind; the next collection finishes them (removes,
// releases) once they are older than any collection's step, since a
// condemnation holds writers back until then.

// ErrCondemned is what a CondemnedError is (errors.Is).
var ErrCondemned = errors.New("meta: the resource is being garbage collected")

// CondemnedError is returned by a write that would reference a resource
// that garbage collection condemned and may be removing. The transaction
// stays usable, but the write did not happen: the caller should end the
// transaction, wait until Condemned reports false, store the bytes again
// if the resource store no longer has them, and retry.
type CondemnedError struct{ ID resource.ID }

func (e *CondemnedError) Error() string {
	return fmt.Sprintf("meta: resource %s is being garbage collected", e.ID)
}

// Is makes errors.Is(err, ErrCondemned) true.
func (e *CondemnedError) Is(target error) bool { return target == ErrCondemned }

// ErrCollectedSince is CheckStored's answer when garbage collection
// condemned or released a resource since the epoch given: the bytes stored
// after it may have been removed. The writer reads the epoch again (while
// the resource is not condemned), makes sure of the bytes and tries again.
var ErrCollectedSince = errors.New("meta: garbage collection ran while the resource was stored")

// CheckStored is the check of a writer that read epoch (CollectorEpoch)
// while id was not condemned, then stored id's bytes: call it in the
// transaction that references them. It fails with a *CondemnedError when
// id is condemned now, and with ErrCollectedSince when any condemnation or
// release committed since epoch.
func CheckStored(ctx context.Context, r CollectorReader, id resource.ID, epoch int64) error {
	c, err := r.Condemned(ctx, id)
	if err != nil {
		return err
	}
	if c {
		return &CondemnedError{ID: id}
	}
	e, err := r.CollectorEpoch(ctx)
	if err != nil {
		return err
	}
	if e != epoch {
		return ErrCollectedSince
	}
	return nil
}

// Condemnation is a resource condemned by garbage collection, and when.
type Condemnation struct {
	ID resource.ID
	At time.Time
}

// CollectorReader reads the condemnations of garbage collection.
type CollectorReader interface {
	// Condemned reports whether the resource is condemned.
	Condemned(ctx context.Context, id resource.ID) (bool, error)
	// CollectorEpoch counts the condemnations and releases committed so
	// far (see CheckStored).
	CollectorEpoch(ctx context.Context) (int64, error)
	// Condemnations lists the condemnations made before the time, oldest
	// first, at most limit of them (limit <= 0: all): those of collectors
	// that died before releasing them.
	Condemnations(ctx context.Context, before time.Time, limit int) ([]Condemnation, error)
}

// CollectorWriter condemns and releases resources (see the comment above
// ErrCondemned for the protocol).
type CollectorWriter interface {
	// Condemn condemns the resource, at the time given, if no upload and
	// no message references it and it is not condemned already, and
	// reports whether it did; a condemnation advances CollectorEpoch. From
	// its commit until Release, every write that would reference the
	// resource fails with a CondemnedError.
	Condemn(ctx context.Context, id resource.ID, at time.Time) (bool, error)
	// Release ends the condemnation, once the blob is removed (or its
	// removal failed: no removal of the collector's is under way any
	// more), advancing CollectorEpoch. Releasing a resource not condemned
	// is not an error (and advances nothing).
	Release(ctx context.Context, id resource.ID) error
}
