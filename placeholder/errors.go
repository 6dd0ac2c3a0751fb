package placeholder

import (
	"fmt"

	"github.com/pullmail/pullmail/errs"
)

// Error codes. Every refusal from this package is an *errs.Error of kind
// errs.Invalid carrying one of these codes (docs/PROTOCOL.md §7). Codes are a
// contract: never renamed once published.
const (
	CodeMalformedJSON         = "malformed_json"          // not JSON, trailing data, invalid UTF-8, lone surrogate escape
	CodeDocumentTooLarge      = "document_too_large"      // more bytes than Limits.MaxDocument
	CodeWrongType             = "wrong_type"              // a member or header value of the wrong JSON type (number, null, boolean, ...)
	CodeUnknownMember         = "unknown_member"          // a member other than "headers" and "parts"
	CodeMissingMember         = "missing_member"          // no "headers", or no "parts" at the top level
	CodeDuplicateKey          = "duplicate_key"           // the same object key twice
	CodeDuplicateHeader       = "duplicate_header"        // two header names that differ only in case
	CodeBadHeaderName         = "bad_header_name"         // not an RFC 5322 field-name, or a registered name misspelled in case
	CodeBadHeaderValue        = "bad_header_value"        // empty array, CR/LF/NUL, bad syntax for a registered header, list where one string is required
	CodeHeaderTooLarge        = "header_too_large"        // a value of more than Limits.MaxHeaderValue bytes
	CodeTooManyHeaders        = "too_many_headers"        // more than Limits.MaxHeaders fields in one "headers"
	CodeTooDeep               = "too_deep"                // parts nested deeper than Limits.MaxDepth
	CodeTooManyParts          = "too_many_parts"          // more than Limits.MaxParts parts in all
	CodeEmptyParts            = "empty_parts"             // "parts": []
	CodeBadContentType        = "bad_content_type"        // Content-Type missing or wrong for a multipart or a leaf
	CodeBadContentID          = "bad_content_id"          // Content-ID missing on a leaf, not "<ID>", or on a multipart
	CodeBadContentDisposition = "bad_content_disposition" // not inline/attachment with at most a filename
	CodeBadAddress            = "bad_address"             // an address header that net/mail cannot parse, or a non-ASCII domain
	CodeBadEHL                = "bad_ehl"                 // an ehl naming a missing header, a name twice, or lacking a required name
	CodeDigestMismatch        = "digest_mismatch"         // Body-Digest or Recipients-Digest does not match the message
	CodeServerOwnedHeader     = "server_owned_header"     // a client set a header that only the server sets
)

func invalid(code, format string, args ...any) error {
	return errs.E(errs.Invalid, code, format, args...)
}

func wrapInvalid(err error, code, format string, args ...any) error {
	return errs.Wrap(err, errs.Invalid, code, fmt.Sprintf(format, args...))
}

// Limits bound what Parse and Validate accept. A zero field means the
// default.
type Limits struct {
	MaxDocument    int // bytes of the whole JSON document
	MaxDepth       int // nesting of "parts": the message's own parts are at depth 1
	MaxParts       int // parts in all, at every depth
	MaxHeaders     int // fields in one "headers" object
	MaxHeaderValue int // bytes of one header value (all strings of a list added up)
}

// DefaultLimits returns the limits of docs/PROTOCOL.md §2.5.
func DefaultLimits() Limits {
	return Limits{
		MaxDocument:    1 << 20,
		MaxDepth:       16,
		MaxParts:       1000,
		MaxHeaders:     100,
		MaxHeaderValue: 16 << 10,
	}
}

// WithDefaults returns l with every zero field set to its default
// (DefaultLimits), as Parse and Validate apply them.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxDocument <= 0 {
		l.MaxDocument = d.MaxDocument
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = d.MaxHeaders
	}
	if l.MaxHeaderValue <= 0 {
		l.MaxHeaderValue = d.MaxHeaderValue
	}
	return l
}
