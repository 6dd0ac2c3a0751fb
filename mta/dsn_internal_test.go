package mta

import "testing"

func TestWithoutResolver(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"lookup _federizer._rs._tcp.nowhere.test on 127.0.0.1:40053: no such host", "lookup _federizer._rs._tcp.nowhere.test: no such host"},
		{"lookup x on [::1]:53: server misbehaving", "lookup x: server misbehaving"},
		{"b.test's mail exchanger mx.b.test refused them: 550 5.1.1 no such user", "b.test's mail exchanger mx.b.test refused them: 550 5.1.1 no such user"},
		{"dial tcp 192.0.2.7:25: connect: connection refused", "dial tcp 192.0.2.7:25: connect: connection refused"},
		{"relayed on 2026-12-03 10:00", "relayed on 2026-12-03 10:00"},
	} {
		if got := withoutResolver(tc.in); got != tc.want {
			t.Errorf("withoutResolver(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
