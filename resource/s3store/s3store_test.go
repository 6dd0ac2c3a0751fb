package s3store_test

import (
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/blobstore"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/bucket/buckettest"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
	"github.com/pullmail/pullmail/resource/storetest"
)

// corrupting lets the suite's damage cases flip a byte of the S3 object.
type corrupting struct {
	resource.Store
	b bucket.Bucket
}

func (c corrupting) Corrupt(t *testing.T, id resource.ID, off int64) {
	t.Helper()
	if err := bucket.Flip(t.Context(), c.b, string(id), off); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	storetest.Test(t, func(t *testing.T) resource.Store {
		b := srv.NewBucket(t, s3store.Options{})
		return corrupting{blobstore.New(b, blobstore.Options{}), b}
	})
}

func TestBucketConformance(t *testing.T) {
	srv := s3test.Start(t)
	buckettest.Test(t, func(t *testing.T) bucket.Bucket {
		return srv.NewBucket(t, s3store.Options{PartSize: 5 << 20})
	}, buckettest.Options{Big: 11 << 20})
}
