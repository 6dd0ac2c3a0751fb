package mta

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// Delivery states of a recipient of a sent message (docs/PROTOCOL.md
// §8.20): the same for Pullmail and SMTP recipients.
const (
	DeliveryQueued    = "queued"    // not tried yet, or its first attempt is running
	DeliveryDeferred  = "deferred"  // an attempt failed for a temporary reason; retried at NextRetry
	DeliveryDelivered = "delivered" // the recipient's domain took it
	DeliveryFailed    = "failed"    // given up for good; a delivery-status notice went to the author
)

// Delivery is where a sent message is for one remote recipient, as its
// push jobs say.
type Delivery struct {
	Recipient string
	Domain    string
	Via       string // "pullmail" or "smtp"; "" before the domain was looked up
	State     string // Delivery*
	// Reply is the last answer for the recipient: an SMTP exchanger's
	// ("451 4.7.1 try later"), or why the attempt failed; Code is the SMTP
	// reply code in it, when an exchanger answered.
	Reply string
	Code  int
	// NextRetry is when a deferred delivery is tried again.
	NextRetry time.Time
	MX, TLS   string // the exchanger of the last SMTP attempt, and its TLS
	Updated   time.Time
}

// Deliveries reads the delivery state of the remote recipients of the
// sent message row sentRow from its push jobs (QueueSend's, and the jobs
// of recipients an exchanger deferred): one per recipient, in the order
// they were queued. A job's payload records what its last attempt found
// (PushPayload.Outcome); a later job for a recipient (its deferred job)
// overrides an earlier one.
func Deliveries(ctx context.Context, r meta.JobReader, sentRow string) ([]Delivery, error) {
	jobs, err := r.JobsByKeyPrefix(ctx, "push:"+sentRow+":")
	if err != nil {
		return nil, fmt.Errorf("mta: the push jobs of %s: %w", sentRow, err)
	}
	var order []string
	byRcpt := map[string]Delivery{}
	for _, j := range jobs {
		var p PushPayload
		if err := json.Unmarshal(j.Payload, &p); err != nil || p.MessageRow != sentRow {
			continue
		}
		for _, rc := range p.Recipients {
			d := jobDelivery(j, p, rc)
			if _, ok := byRcpt[rc]; !ok {
				order = append(order, rc)
			}
			byRcpt[rc] = d
		}
	}
	out := make([]Delivery, 0, len(order))
	for _, rc := range order {
		out = append(out, byRcpt[rc])
	}
	return out, nil
}

// jobDelivery is rc's state as job j says.
func jobDelivery(j meta.Job, p PushPayload, rc string) Delivery {
	d := Delivery{Recipient: rc, Domain: p.Domain, Via: p.Via, MX: p.MX, TLS: p.TLS, Updated: j.Updated}
	oc, ok := p.Outcome[rc]
	switch j.State {
	case meta.JobDone:
		d.State = DeliveryDelivered
		if ok {
			d.State, d.Reply = oc.State, oc.Reply
		}
	case meta.JobFailed:
		d.State, d.Reply = DeliveryFailed, j.LastError
		if ok && oc.Reply != "" {
			d.Reply = oc.Reply
		}
	default: // queued, or running an attempt
		if j.LastError == "" {
			d.State = DeliveryQueued
			break
		}
		d.State, d.Reply = DeliveryDeferred, j.LastError
		if ok && oc.Reply != "" && oc.State != DeliveryDelivered {
			d.Reply = oc.Reply
		}
		if j.State == meta.JobQueued {
			d.NextRetry = j.NextTry
		}
	}
	if d.Via == "smtp" {
		d.Code = replyCode(d.Reply)
	}
	return d
}

// answeredCode finds the code in an attempt's error ("MAIL FROM: the server
// answered 550 …", "RCPT TO: 451 …").
var answeredCode = regexp.MustCompile(`(?:^|answered |: )([2-5][0-9][0-9])[ -]`)

// replyCode is the SMTP reply code that reply starts with or names (0:
// none).
func replyCode(reply string) int {
	if m := answeredCode.FindStringSubmatch(reply); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}
