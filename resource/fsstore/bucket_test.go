package fsstore

import (
	"testing"

	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/bucket/buckettest"
)

func TestBucketConformance(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			buckettest.Test(t, func(t *testing.T) bucket.Bucket {
				return newStore(t, t.TempDir(), m.key).Bucket()
			}, buckettest.Options{})
		})
	}
}
