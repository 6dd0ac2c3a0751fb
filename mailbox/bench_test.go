package mailbox_test

import (
	"fmt"
	"testing"

	"github.com/pullmail/pullmail/testenv"
)

// BenchmarkLocalSend measures small local sends over HTTPS with 1, 2 and 16
// concurrent senders: one draft saved and sent per op (two requests, two
// fsync'd transactions), alice to bob, on the real stores.
func BenchmarkLocalSend(b *testing.B) {
	for _, senders := range []int{1, 2, 16} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			d := testenv.Start(b, "a.test", testenv.Options{})
			alice := d.AddUser(b, "alice@a.test")
			d.AddUser(b, "bob@a.test")
			text := upload(b, alice, []byte("a short note"))
			doc := compose(b, "", []string{"bob@a.test"}, nil, nil, "note", text)
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism((senders + 1) / 2)
			if senders == 1 {
				b.SetParallelism(1)
			}
			b.ResetTimer()
			if senders == 1 {
				for i := 0; i < b.N; i++ {
					dr, err := alice.CreateDraft(ctx, doc)
					if err == nil {
						_, err = alice.Send(ctx, dr.ID)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						dr, err := alice.CreateDraft(ctx, doc)
						if err == nil {
							_, err = alice.Send(ctx, dr.ID)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
