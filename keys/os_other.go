//go:build !unix

package keys

import "os"

// lockFile is a no-op where flock(2) is missing: rotating from two processes
// at once may then lose the newer key.
func lockFile(path string) (func(), error) { return func() {}, nil }

// checkPerm accepts any mode where Unix permission bits mean nothing.
func checkPerm(path string, info os.FileInfo) error { return nil }
