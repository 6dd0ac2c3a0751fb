package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// DefaultReadyMinFree is the free space of the data directory's file system
// below which /readyz fails (Config.ReadyMinFree).
const DefaultReadyMinFree = 16 << 20

// Readiness checks (the names /readyz reports when one fails).
const (
	CheckMetadata  = "metadata"   // a write transaction of the metadata store
	CheckResources = "resources"  // a file made and removed where resources are written (another store: a Stat answered)
	CheckUploads   = "uploads"    // a file made and removed in the upload staging directory
	CheckDiskSpace = "disk_space" // free space above Config.ReadyMinFree
)

// settingReady is the metadata setting the readiness check writes.
const settingReady = "readyz"

// readiness runs the checks of /readyz, one run at a time: a probe that
// arrives while a run is under way waits for it and, if the next run
// started after it arrived, shares that run's result. So a flood of probes
// costs one write at a time, and no probe gets a result older than itself.
type readiness struct {
	mu      sync.Mutex
	started time.Time
	failed  []string
}

// ready returns the checks that fail now, none when the domain can work.
func (s *Server) ready(ctx context.Context) []string {
	arrived := time.Now()
	s.readiness.mu.Lock()
	defer s.readiness.mu.Unlock()
	if s.readiness.started.After(arrived) {
		return s.readiness.failed
	}
	s.readiness.started = time.Now()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var failed []string
	check := func(name string, err error) {
		if err != nil {
			s.log.Error("readiness check failed", "check", name, "err", err)
			failed = append(failed, name)
		}
	}
	check(CheckMetadata, s.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.SetSetting(ctx, settingReady, time.Now().UTC().Format(time.RFC3339Nano))
	}))
	check(CheckResources, s.resourcesReady(ctx))
	check(CheckUploads, tryCreate(filepath.Join(s.cfg.DataDir, "uploads")))
	check(CheckDiskSpace, freeAbove(s.cfg.DataDir, s.cfg.ReadyMinFree))
	s.readiness.failed = failed
	return failed
}

// resourcesReady checks the resource store: the file store can write
// where its uploads are written; another (S3) answers a Stat of a resource
// that is not there, since a write would cost a request at every probe and
// leave an object behind.
func (s *Server) resourcesReady(ctx context.Context) error {
	if u := s.Backends.ResourcesURL; u.Scheme == SchemeFile {
		return tryCreate(filepath.Join(u.Path, "tmp"))
	}
	_, err := s.Store.Stat(ctx, resource.IDOf([]byte("pullmail readiness probe")))
	if errors.Is(err, resource.ErrNotFound) {
		err = nil
	}
	return err
}

// tryCreate makes, writes, syncs and removes a small file in dir.
func tryCreate(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("ready\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}

// freeAbove fails when the file system of dir has min bytes or fewer free
// for an unprivileged writer.
func freeAbove(dir string, min uint64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free <= min {
		return fmt.Errorf("%d bytes free under %s, the floor is %d", free, dir, min)
	}
	return nil
}

// readyz is readiness (GET /readyz): 200 when every store really works, else
// 503 unready naming the checks that failed. /healthz stays liveness: a
// full disk makes a domain unready, not dead.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	failed := s.ready(r.Context())
	if len(failed) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
		return
	}
	body := struct {
		errs.Body
		Failed []string `json:"failed"`
	}{errs.Body{Error: errs.Detail{Code: "unready", Message: "not ready: " + strings.Join(failed, ", ")}}, failed}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	json.NewEncoder(w).Encode(body)
}
