package mta_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/pullmail/pullmail/mta"
)

// BenchmarkPushPull: one message with a 16 MiB attachment a.test → b.test,
// from the queued push to the resource held at b.test, over loopback TLS.
func BenchmarkPushPull(b *testing.B) {
	w := newWorld(b, mta.Config{})
	ctx := context.Background()
	data := make([]byte, 16<<20)
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		binary.BigEndian.PutUint64(data, uint64(i)) // a new resource each time
		w.send(b, data, []string{"bob@b.test"})
		b.StartTimer()
		w.mtaA.RunDue(ctx)
		w.mtaB.RunDue(ctx)
	}
}
