package s3test

import (
	"os"
	"testing"
)

// TestBinary builds versitygw into the cache when it is not there (.ci/run
// runs it alone, before the tests, so that they find it) and checks that
// the binary runs.
func TestBinary(t *testing.T) {
	srv := Start(t)
	if fi, err := os.Stat(srv.Cmd.Path); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("versitygw binary %s: %v", srv.Cmd.Path, err)
	}
	if _, err := srv.Client(t).BucketExists(t.Context(), srv.Bucket); err != nil {
		t.Fatalf("versitygw at %s does not answer: %v", srv.Endpoint, err)
	}
}
