// Package interop tests Pullmail's SMTP bridge against mail software no one
// here wrote (issue 15): Debian's Postfix, started by the harness on
// loopback with a configuration, queue and data directory of its own,
// relays into Pullmail's mail exchanger and receives what Pullmail's MTA
// delivers; Python's email package and python3-dkim (dkimpy) check what
// arrives; maddy and mox, as 'pullmail bench' builds them, exchange mail
// with Pullmail both ways; and the bad input of the list meets the
// mail exchanger of a 'pullmail serve' process.
//
// Every server listens on 127.0.0.1 and every name is answered by a DNS
// server of the test's own (discovery/dnstest): nothing leaves
// 127.0.0.0/8. Where a tool is missing a test skips, saying what to
// install; with CI set it fails instead (.ci/run installs them).
//
// The package has no code outside its tests.
package interop
