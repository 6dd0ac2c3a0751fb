// Package memstore is a resource.Store in memory, for fast unit tests: the
// plain store of resource/blobstore over a bucket.Mem, so it checks every
// read by chunk as the stores on disk and S3 do, and runs resource/storetest.
package memstore

import (
	"context"
	"fmt"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/blobstore"
	"github.com/pullmail/pullmail/resource/bucket"
)

// Store is a resource.Store in memory. It is safe for concurrent use.
type Store struct {
	*blobstore.Store
	b *bucket.Mem
}

var _ resource.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	b := bucket.NewMem()
	return &Store{Store: blobstore.New(b, blobstore.Options{}), b: b}
}

// Bucket is the memory the store keeps its objects in: a wrapper such as
// resource/sealed can share it.
func (s *Store) Bucket() *bucket.Mem { return s.b }

// Flip inverts the stored byte at off of resource id, as a failing disk
// would: for damage tests.
func (s *Store) Flip(id resource.ID, off int64) error {
	if err := bucket.Flip(context.Background(), s.b, string(id), off); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}
