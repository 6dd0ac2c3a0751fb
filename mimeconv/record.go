package mimeconv

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/pullmail/pullmail/resource"
)

// RecordVersion is the version of the Record format this package writes and
// reads.
const RecordVersion = 1

// The operations of a Record (docs/PROTOCOL.md §13.3). Each writes to the
// output in turn; the literal stream and the open resource are each read
// from start to end, never twice.
const (
	OpLit    = "lit"    // write the next N bytes of the literal stream
	OpOpen   = "open"   // open resource ID; the following body operations read it from its start
	OpCopy   = "copy"   // write the next N bytes of the open resource as they are
	OpBase64 = "base64" // read N bytes, write them base64 (RFC 4648 §4, padded) in lines of Line characters separated by EOL, and an EOL after the last line when Final
	OpQP     = "qp"     // read N bytes, write them quoted-printable the way Go's mime/quotedprintable Writer does (76-character lines, CRLF)
	OpSkip   = "skip"   // read and discard the next N bytes of the open resource (its original text follows as literal bytes)
)

// Op is one operation of a Record.
type Op struct {
	Op    string      `json:"op"`
	N     int64       `json:"n,omitempty"`
	ID    resource.ID `json:"id,omitempty"`
	Line  int         `json:"line,omitempty"`
	EOL   string      `json:"eol,omitempty"`
	Final bool        `json:"final,omitempty"`
}

// Record is what Render needs, beside the resources, to write a converted
// message back byte for byte.
type Record struct {
	Version int `json:"v"`
	// Size and SHA256 describe the original message; Render checks what it
	// wrote against them.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // b64u, unpadded
	// The literal stream: inline when small (Lits, base64 in JSON), else the
	// resource LitsID of LitsSize bytes.
	Lits     []byte      `json:"lits,omitempty"`
	LitsID   resource.ID `json:"lits_id,omitempty"`
	LitsSize int64       `json:"lits_size,omitempty"`
	Ops      []Op        `json:"ops"`
}

// Limits on a Record read from storage: generous for any message Convert
// writes, small enough that a corrupt one cannot exhaust memory.
const (
	maxOps        = 1 << 20
	maxInlineLits = 64 << 10 // Convert moves a larger literal stream to a resource
	maxLine       = 998      // RFC 5322 §2.1.1
)

// ParseRecord reads a Record in its JSON form, strictly: unknown members, a
// version other than RecordVersion and inconsistent operations are refused.
func ParseRecord(data []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("mimeconv: reading record: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("mimeconv: reading record: data after the record")
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Check reports whether r is well formed: a known version, known operations
// with sane arguments, a body operation only after an open, and literal
// operations that add up to the literal stream.
func (r *Record) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("mimeconv: bad record: "+format, a...)
	}
	if r.Version != RecordVersion {
		return bad("version %d, want %d", r.Version, RecordVersion)
	}
	if r.Size < 0 {
		return bad("negative size")
	}
	if _, err := resource.ParseID(r.SHA256); err != nil {
		return bad("sha256: %v", err)
	}
	litsSize := int64(len(r.Lits))
	switch {
	case r.LitsID != "" && len(r.Lits) > 0:
		return bad("both lits and lits_id")
	case r.LitsID != "":
		if _, err := resource.ParseID(string(r.LitsID)); err != nil {
			return bad("lits_id: %v", err)
		}
		if r.LitsSize < 0 {
			return bad("negative lits_size")
		}
		litsSize = r.LitsSize
	case r.LitsSize != 0:
		return bad("lits_size without lits_id")
	case len(r.Lits) > maxInlineLits:
		return bad("inline literal stream of %d bytes", len(r.Lits))
	}
	if len(r.Ops) > maxOps {
		return bad("%d operations", len(r.Ops))
	}
	var lits, total int64
	open := false
	for i, op := range r.Ops {
		if op.N < 0 {
			return bad("op %d: negative n", i)
		}
		switch op.Op {
		case OpLit:
			if op.ID != "" || op.Line != 0 || op.EOL != "" || op.Final {
				return bad("op %d: arguments that lit does not take", i)
			}
			lits += op.N
			total += op.N
			continue
		case OpOpen:
			if _, err := resource.ParseID(string(op.ID)); err != nil {
				return bad("op %d: %v", i, err)
			}
			open = true
			continue
		case OpCopy, OpSkip, OpQP:
		case OpBase64:
			if op.Line < 4 || op.Line > maxLine || op.Line%4 != 0 {
				return bad("op %d: base64 line of %d characters", i, op.Line)
			}
			if op.EOL != "\r\n" && op.EOL != "\n" {
				return bad("op %d: base64 line end %q", i, op.EOL)
			}
		default:
			return bad("op %d: unknown operation %q", i, op.Op)
		}
		if op.ID != "" || (op.Op != OpBase64 && (op.Line != 0 || op.EOL != "" || op.Final)) {
			return bad("op %d: arguments that %s does not take", i, op.Op)
		}
		if !open {
			return bad("op %d: %s before any open", i, op.Op)
		}
		if op.Op == OpCopy {
			total += op.N
		}
	}
	if lits != litsSize {
		return bad("literal operations take %d bytes of a %d-byte stream", lits, litsSize)
	}
	if total > r.Size {
		return bad("operations write more than the message's %d bytes", r.Size)
	}
	return nil
}
