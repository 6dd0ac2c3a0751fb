package mailbox

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/pullmail/pullmail/resource"
)

// API is the mailbox API as Go methods. *Service implements it for the
// user in the context (auth.WithPrincipal); package client implements it over
// HTTPS. Tests run the same scenarios against both. docs/PROTOCOL.md §8 maps
// each method to its HTTP route.
type API interface {
	Me(ctx context.Context) (Me, error)
	// Upload stores a resource streamed from r and records that the user
	// holds it. See UploadOptions for what may be declared.
	Upload(ctx context.Context, r io.Reader, opt UploadOptions) (Upload, error)
	// CreateDraft stores a new draft from a Placeholder Message document
	// without server-owned headers; the server sets From (if absent) and
	// Message-ID.
	CreateDraft(ctx context.Context, doc json.RawMessage) (Message, error)
	// UpdateDraft replaces a draft's document; sent messages are immutable.
	UpdateDraft(ctx context.Context, id string, doc json.RawMessage) (Message, error)
	// Delete moves a message of any folder to trash, where it stays for
	// meta.TrashRetention unless restored (docs/PROTOCOL.md §8.18).
	Delete(ctx context.Context, id string) error
	// Purge removes a message in trash, or a draft, for good.
	Purge(ctx context.Context, id string) error
	// Restore moves a message in trash back to the folder it was deleted
	// from.
	Restore(ctx context.Context, id string) (Message, error)
	// Move moves a message to another folder: archive, junk, requests,
	// inbox, a folder of the user's own, or trash (the same as Delete).
	Move(ctx context.Context, id, folder string) (Message, error)
	// Search lists the user's messages that match a query (ParseQuery),
	// newest first and paged as a folder listing is.
	Search(ctx context.Context, opt SearchOptions) (List, error)
	// Folders lists the user's folders with their counts: the system
	// folders, then the user's own.
	Folders(ctx context.Context) (FolderList, error)
	// CreateFolder adds a folder of the user's own (meta.UserFolderName).
	CreateFolder(ctx context.Context, name string) (FolderInfo, error)
	// DeleteFolder removes an empty folder of the user's own.
	DeleteFolder(ctx context.Context, name string) error
	// Send sends a draft: it becomes immutable and moves to sent, and every
	// local recipient gets a copy in their inbox, all in one commit.
	Send(ctx context.Context, id string) (Message, error)
	// SetSeen marks a message read or unread.
	SetSeen(ctx context.Context, id string, seen bool) (Message, error)
	// List lists a folder, newest first, with the sync cursor it is current
	// at, one page at a time (ListOptions.Page, List.NextPage).
	List(ctx context.Context, opt ListOptions) (List, error)
	// Get returns one message with its Placeholder Message.
	Get(ctx context.Context, id string) (Message, error)
	// Lookup returns the user's copies with a Message-ID header (with or
	// without angle brackets).
	Lookup(ctx context.Context, messageID string) ([]Message, error)
	// Changes returns what changed since a cursor; errs Gone with code
	// resync_required when the cursor is too old.
	Changes(ctx context.Context, cursor string, limit int) (Changes, error)
	// Download opens a resource through a message of the user's that
	// references it. The caller closes the reader.
	Download(ctx context.Context, id string, cid resource.ID) (io.ReadCloser, Attachment, error)
	// Raw opens the message as RFC 5322 bytes (docs/PROTOCOL.md §13.9):
	// what came by SMTP exactly as it came, what was written in Pullmail
	// composed as MIME. The caller closes the reader; an error while it is
	// read means the bytes are not the message.
	Raw(ctx context.Context, id string) (io.ReadCloser, error)
	// Events calls fn with the user's latest cursor, then whenever their
	// change log advances, until ctx ends (docs/PROTOCOL.md §8.13).
	Events(ctx context.Context, fn func(Event) error) error
	// CreateUpload starts a resumable upload (docs/PROTOCOL.md §8.14).
	CreateUpload(ctx context.Context, req NewUploadSession) (UploadSession, error)
	// UploadStatus tells how many bytes of an upload the server holds.
	UploadStatus(ctx context.Context, id string) (UploadSession, error)
	// AppendUpload sends the bytes of an upload from offset on; the bytes
	// that arrive count even when r fails. The last byte commits the
	// resource (ContentID set).
	AppendUpload(ctx context.Context, id string, offset int64, r io.Reader) (UploadSession, error)
	// DeleteUpload abandons an upload.
	DeleteUpload(ctx context.Context, id string) error
	// Forward passes a message on (docs/PROTOCOL.md §8.16, §12).
	Forward(ctx context.Context, id string, req ForwardRequest) (Forwarded, error)
	// AutoForward returns the user's automatic forwarding rule
	// (docs/PROTOCOL.md §12.6).
	AutoForward(ctx context.Context) (AutoForward, error)
	// SetAutoForward sets the rule; an empty To turns it off. Forbidden
	// (forwarding_denied) when the user's policy does not allow it.
	SetAutoForward(ctx context.Context, req AutoForwardRequest) (AutoForward, error)
	// Stat reports a resource the user holds, which a new message may
	// reference without uploading it again.
	Stat(ctx context.Context, cid resource.ID) (Upload, error)
}

// Me describes the signed-in user.
type Me struct {
	Address string `json:"address"`
	Domain  string `json:"domain"`
	// Features lists what this server offers beyond the base API:
	// "events" (§8.13), "uploads" (§8.14), "paging" (§8.10.2).
	Features []string `json:"features"`
}

// UploadOptions declares what the uploaded bytes must be. A mismatch fails the
// upload and stores nothing.
type UploadOptions struct {
	// Digest, when set, is the Content-ID the bytes must hash to.
	Digest resource.ID
	// Size, when >= 0, is the exact number of bytes. -1: unknown.
	Size int64
}

// Upload is the answer to an upload.
type Upload struct {
	ContentID resource.ID `json:"content_id"` // bare, without angle brackets
	Size      int64       `json:"size"`
}

// Attachment describes a resource leaf of a message.
type Attachment struct {
	ContentID   resource.ID `json:"content_id"`
	Size        int64       `json:"size"`
	ContentType string      `json:"content_type"`
	Disposition string      `json:"disposition,omitempty"`
	Filename    string      `json:"filename,omitempty"`
}

// Message is a message as the API shows it. Summaries (List) leave
// Placeholder out.
type Message struct {
	ID           string `json:"id"`
	MessageID    string `json:"message_id"`
	ThreadID     string `json:"thread_id,omitempty"`
	Folder       string `json:"folder"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
	Seen         bool   `json:"seen"`
	// Keywords are the message's other flags ("$flagged", "$answered",
	// user keywords; meta/keywords.go), shared with IMAP and JMAP.
	Keywords    []string        `json:"keywords,omitempty"`
	From        string          `json:"from"`
	To          []string        `json:"to"`
	Cc          []string        `json:"cc,omitempty"`
	Bcc         []string        `json:"bcc,omitempty"`
	Subject     string          `json:"subject"`
	Date        *time.Time      `json:"date"` // null for drafts
	InReplyTo   string          `json:"in_reply_to,omitempty"`
	Created     time.Time       `json:"created"`
	Updated     time.Time       `json:"updated"`
	Size        int64           `json:"size"`
	Text        *Attachment     `json:"text,omitempty"` // the inline text/plain body, if any
	HTML        *Attachment     `json:"html,omitempty"` // the inline text/html body, if any
	Attachments []Attachment    `json:"attachments"`
	Placeholder json.RawMessage `json:"placeholder,omitempty"`
	// Forward is set on a copy that came by a forward, and on the record
	// of a forward in sent: who forwarded it, to whom, and their note.
	Forward *ForwardInfo `json:"forward,omitempty"`
	// Chain is the chain of signed envelopes a received copy arrived with,
	// oldest hop (the author's) first (Get only; docs/PROTOCOL.md §12).
	Chain []ChainHop `json:"chain,omitempty"`
	// Deliveries is, on a sent message (List, Search, Get, Lookup), where it is
	// for each recipient, local and remote, in the order of To, Cc and
	// Bcc (docs/PROTOCOL.md §8.20).
	Deliveries []Delivery `json:"deliveries,omitempty"`

	all   []Attachment // every resource leaf, inline bodies included
	rcpts []string     // the addresses of To, Cc and Bcc, in order
}

// Delivery is where a sent message is for one recipient (docs/PROTOCOL.md
// §8.20). Local recipients are delivered with the send; a remote one's
// state comes from the push job that carries its copy (package mta).
type Delivery struct {
	Recipient string `json:"recipient"`
	Domain    string `json:"domain"`
	// Via is how the copy goes: "local" (this domain's inbox), "pullmail"
	// (pushed to a Pullmail domain), "smtp" (to an SMTP domain's mail
	// exchanger); "" while the domain has not been looked up yet.
	Via string `json:"via"`
	// State is queued, deferred (an attempt failed for a temporary
	// reason; tried again at next_retry), delivered, or failed (given up;
	// a delivery-status notice is in the sender's inbox).
	State string `json:"state"`
	// Reply is the last answer: an SMTP exchanger's reply ("550 5.1.1 no
	// such user") or why the last attempt failed; Code is the SMTP reply
	// code in it, when an exchanger answered.
	Reply     string     `json:"reply,omitempty"`
	Code      int        `json:"code,omitempty"`
	NextRetry *time.Time `json:"next_retry,omitempty"`
	// MX and TLS name the mail exchanger of the last SMTP attempt and how
	// its connection was protected: verified, unverified or none.
	MX      string    `json:"mx,omitempty"`
	TLS     string    `json:"tls,omitempty"`
	Updated time.Time `json:"updated"`
}

// ListOptions selects a folder.
type ListOptions struct {
	Folder string // inbox (default) or any folder of meta.Folders
	Limit  int    // <= 0: the server's default (1000)
	Page   string // a List.NextPage: the page after it; "": the newest
}

// List is a folder listing.
type List struct {
	Messages []Message `json:"messages"`
	// Cursor is the sync cursor the listing is current at: Changes(Cursor)
	// returns what happens after it.
	Cursor string `json:"cursor"`
	// NextPage, when set, is the token of the next (older) page: pass it
	// as ListOptions.Page. Absent when nothing older remains.
	NextPage string `json:"next_page,omitempty"`
}

// Change is one entry of the sync protocol.
type Change struct {
	Cursor string `json:"cursor"` // the cursor just after this change
	ID     string `json:"id"`     // the message's id
	Folder string `json:"folder"`
	Kind   string `json:"kind"` // created, updated or deleted
	// Message is the message's summary as it is now, for created and
	// updated changes of messages that still exist.
	Message *Message `json:"message,omitempty"`
}

// Changes is the answer to a changes request.
type Changes struct {
	Changes []Change `json:"changes"`
	Cursor  string   `json:"cursor"` // pass it to the next request
	More    bool     `json:"more"`   // more changes are waiting: ask again at once
}
