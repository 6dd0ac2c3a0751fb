package bucket_test

import (
	"testing"

	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/bucket/buckettest"
)

func TestMemConformance(t *testing.T) {
	buckettest.Test(t, func(t *testing.T) bucket.Bucket { return bucket.NewMem() }, buckettest.Options{})
}
