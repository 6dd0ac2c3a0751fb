package client

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseSSE(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // "event|data"
	}{
		{"event: cursor\ndata: {\"cursor\":\"5\"}\n\n", []string{`cursor|{"cursor":"5"}`}},
		{": ping\n\nevent: change\r\ndata: a\r\ndata: b\r\n\r\n", []string{"ping|", "change|a\nb"}},
		{"data:x\rdata: y\r\r", []string{"message|x\ny"}},
		{"event: change\ndata: 1\n", nil}, // not dispatched: the stream ended mid-event
		{"event: lonely\n\n", nil},        // no data: nothing dispatched
		{"id: 3\nretry: 10\nunknown\ndata: z\n\n", []string{"message|z"}},
	} {
		var got []string
		err := ParseSSE(iotest.OneByteReader(strings.NewReader(tc.in)), func(event, data string) error {
			got = append(got, event+"|"+data)
			return nil
		})
		if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ParseSSE(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	stop := errors.New("stop")
	if err := ParseSSE(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(string, string) error { return stop }); err != stop {
		t.Errorf("fn's error not returned: %v", err)
	}
	if err := ParseSSE(strings.NewReader("data: "+strings.Repeat("x", MaxSSELine)+"\n\n"), func(string, string) error { return nil }); err == nil {
		t.Error("an oversize line was accepted")
	}
}

func FuzzParseSSE(f *testing.F) {
	f.Add("event: cursor\ndata: {\"cursor\":\"5\"}\n\n: ping\n\n")
	f.Add("data:a\r\ndata:b\r\rdata\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		n := 0
		ParseSSE(strings.NewReader(in), func(event, data string) error {
			n++
			if strings.ContainsAny(event, "\r\n") {
				t.Fatalf("event type %q holds a line break", event)
			}
			if strings.Contains(data, "\r") {
				t.Fatalf("data %q holds a CR", data)
			}
			return nil
		})
		if n > len(in) {
			t.Fatalf("%d events from %d bytes", n, len(in))
		}
	})
}
