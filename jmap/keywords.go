package jmap

import (
	"net/mail"

	"github.com/pullmail/pullmail/mailbox"
)

// messageKeywords are a message's keywords besides $seen and $draft (the
// mailbox's own: mailbox.Message.Keywords, sorted, lower-case).
func messageKeywords(m mailbox.Message) []string { return m.Keywords }

// mailAddress formats a display name and an address as RFC 5322 does.
type mailAddress struct{ name, addr string }

func (a *mailAddress) String() string { return (&mail.Address{Name: a.name, Address: a.addr}).String() }
