package mta

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// notice is a delivery-status notice whose text is stored already.
type notice struct {
	text resource.Info
	msg  *placeholder.Message
	// epoch is garbage collection's, read before the text was stored:
	// the transaction that references the text checks that no
	// collection could have removed it meanwhile (meta.CheckStored).
	epoch int64
}

// resolverRE matches what Go's resolver adds to a DNS error: " on
// ADDR:PORT" naming the DNS server asked.
var resolverRE = regexp.MustCompile(` on (\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d+`)

// withoutResolver drops the DNS server's address from reason: it tells the
// author nothing, and tells whoever reads the notice (it may be forwarded)
// about this domain's network.
func withoutResolver(reason string) string { return resolverRE.ReplaceAllString(reason, "") }

// prepareNotice stores the text of the notice telling p's author that the
// copy for p.Domain failed for reason, and builds its placeholder.
func (m *MTA) prepareNotice(ctx context.Context, p PushPayload, reason string) (*notice, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "Your message %s could not be delivered to:\n\n", p.MessageID)
	for _, r := range p.Recipients {
		fmt.Fprintf(&b, "    %s\n", r)
	}
	if len(p.Recipients) == 0 {
		fmt.Fprintf(&b, "    the recipients at %s\n", p.Domain)
	}
	fmt.Fprintf(&b, "\nThe mail system at %s gave up on it. The reason:\n\n    %s\n", m.cfg.Domain, withoutResolver(reason))
	text := []byte(b.String())
	var epoch int64
	err := m.cfg.Meta.View(ctx, func(r meta.Reader) error {
		var err error
		epoch, err = r.CollectorEpoch(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the collector's epoch: %w", err)
	}
	info, err := m.cfg.Resources.Put(ctx, bytes.NewReader(text), resource.PutOptions{Size: int64(len(text))})
	if err != nil {
		return nil, fmt.Errorf("storing the notice's text: %w", err)
	}
	leaf, err := placeholder.NewLeaf(info.ID, info.Size, "text/plain; charset=utf-8", "inline", "")
	if err != nil {
		return nil, fmt.Errorf("the notice's part: %w", err)
	}
	msg := placeholder.New("Mail Delivery System <postmaster@"+m.cfg.Domain+">", []string{p.Author}, nil, nil,
		"Undelivered mail: "+addressList(p.Recipients))
	msg.Parts = append(msg.Parts, leaf)
	now := m.cfg.Clock()
	msg.Header.SetString(placeholder.HDate, placeholder.FormatDate(now))
	msg.Header.SetString(placeholder.HMessageID, placeholder.NewMessageID(m.cfg.Domain))
	msg.Header.SetString(placeholder.HThreadID, placeholder.NewMessageID(m.cfg.Domain))
	if p.MessageID != "" {
		msg.Header.SetString(placeholder.HInReplyTo, p.MessageID)
	}
	msg.Header.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(msg))
	rd, err := placeholder.RecipientsDigest(msg.Header)
	if err != nil {
		return nil, fmt.Errorf("the notice's recipients: %w", err)
	}
	msg.Header.SetString(placeholder.HRecipientsDigest, rd)
	if err := msg.Validate(placeholder.Limits{}); err != nil {
		return nil, fmt.Errorf("the notice does not validate: %w", err)
	}
	return &notice{text: info, msg: msg, epoch: epoch}, nil
}

// insertNotice puts n in the author's inbox through the mailbox, in the
// transaction that fails job j. Its row ID is derived from the job so that
// it is inserted once.
func (m *MTA) insertNotice(ctx context.Context, tx meta.Tx, j meta.Job, p PushPayload, n *notice) error {
	if err := meta.CheckStored(ctx, tx, n.text.ID, n.epoch); err != nil {
		// A collection may have taken the text: the job's next run
		// stores it again.
		return fmt.Errorf("the delivery-status notice of %s: %w", p.MessageID, err)
	}
	err := m.cfg.Mailbox.DeliverNotice(ctx, tx, p.UserID, "dsn-"+strconv.FormatInt(j.ID, 10), n.msg.Canonical())
	if err != nil {
		return fmt.Errorf("inserting the delivery-status notice of %s: %w", p.MessageID, err)
	}
	return nil
}
