package mta_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mta"
)

// counting counts the requests an MTA makes through its transport.
type counting struct {
	next                    federation.Transport
	push, exchange, fetches atomic.Int32
}

func (c *counting) Push(ctx context.Context, r federation.PushRequest) (*federation.Answer, error) {
	c.push.Add(1)
	return c.next.Push(ctx, r)
}

func (c *counting) Exchange(ctx context.Context, r federation.TokenRequest) (*federation.Answer, error) {
	c.exchange.Add(1)
	return c.next.Exchange(ctx, r)
}

func (c *counting) Fetch(ctx context.Context, r federation.FetchRequest) (*federation.Answer, error) {
	c.fetches.Add(1)
	return c.next.Fetch(ctx, r)
}

// TestRequestsPerMessage counts the HTTPS requests of both MTAs for one
// message with two resources, with a.test's MTA reaching its own
// authorization server over HTTPS and in process (Config.OwnAS): the
// assertion for the push no longer crosses the network.
func TestRequestsPerMessage(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		ownAS                    bool
		exchanges, pushes, fetch int32
	}{
		{"own AS over HTTPS", false, 2, 1, 2},
		{"own AS in process", true, 1, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, mta.Config{})
			c := &counting{next: federation.HTTPS{Client: w.client}}
			cfg := mta.Config{Transport: c}
			if tc.ownAS {
				cfg.OwnAS = w.authzA.Handler()
			}
			w.restartA(cfg)
			w.restartB(mta.Config{Transport: c})
			one, two := bytes.Repeat([]byte("one "), 1000), bytes.Repeat([]byte("two "), 1000)
			sent := w.sendParts(t, []string{"bob@b.test"}, one, two)
			w.mtaA.RunDue(ctx)
			w.mtaB.RunDue(ctx)
			in := inbox(t, w.b, "bob@b.test")
			if len(in) != 1 || in[0].Status != meta.StatusComplete {
				t.Fatalf("bob's copy: %+v", in)
			}
			for i, data := range [][]byte{one, two} {
				if !bytes.Equal(read(t, w.b.Store, sent.Refs[i].ID), data) {
					t.Fatalf("resource %d differs", i)
				}
			}
			got := [3]int32{c.exchange.Load(), c.push.Load(), c.fetches.Load()}
			t.Logf("HTTPS requests of the MTAs: %d (token exchanges %d, pushes %d, fetches %d)",
				got[0]+got[1]+got[2], got[0], got[1], got[2])
			if want := [3]int32{tc.exchanges, tc.pushes, tc.fetch}; got != want {
				t.Fatalf("exchanges, pushes, fetches: %v, want %v", got, want)
			}
		})
	}
}
