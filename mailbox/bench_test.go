package mailbox_test

import (
	"testing"

	"github.com/pullmail/pullmail/testenv"
)

// BenchmarkLocalSend measures small local sends over HTTPS: one draft saved
// and sent per op (two requests), alice to bob, on the real stores.
func BenchmarkLocalSend(b *testing.B) {
	d := testenv.Start(b, "a.test", testenv.Options{})
	alice := d.AddUser(b, "alice@a.test")
	d.AddUser(b, "bob@a.test")
	text := upload(b, alice, []byte("a short note"))
	doc := compose(b, "", []string{"bob@a.test"}, nil, nil, "note", text)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			dr, err := alice.CreateDraft(ctx, doc)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := alice.Send(ctx, dr.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
