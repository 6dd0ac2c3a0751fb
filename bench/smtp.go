package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// smtpConn is the benchmark's side of one SMTP session: the sending
// domain's MTA delivering to a peer's port 25 (RFC 5321), with STARTTLS
// (RFC 3207) when the server offers it.
type smtpConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
	// wait bounds the wait for each reply: long enough for a server to
	// store a gigabyte after DATA; sendSmall shortens it, since a server
	// that slows its replies down after refusals (mox) would otherwise
	// hold a sender for that long.
	wait time.Duration
}

// smtpError is a 4xx or 5xx reply: the server refused.
type smtpError struct {
	code int
	msg  string
}

func (e *smtpError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

// dialSMTP connects to addr from the loopback address local ("" for any),
// reads the greeting, says EHLO and upgrades to TLS if offered.
func dialSMTP(ctx context.Context, addr, local string) (*smtpConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	c := &smtpConn{c: nc, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 64<<10), wait: 30 * time.Minute}
	if _, _, err := c.reply(220); err != nil {
		nc.Close()
		return nil, err
	}
	lines, err := c.cmd(250, "EHLO sender.bench.test")
	if err != nil {
		nc.Close()
		return nil, err
	}
	for _, l := range lines {
		if strings.EqualFold(strings.Fields(l + " x")[0], "STARTTLS") {
			if _, err := c.cmd(220, "STARTTLS"); err != nil {
				nc.Close()
				return nil, err
			}
			// The peers' certificates are self-signed: the benchmark
			// encrypts as a sending MTA opportunistically would.
			tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
			if err := tc.HandshakeContext(ctx); err != nil {
				nc.Close()
				return nil, fmt.Errorf("smtp: STARTTLS: %w", err)
			}
			c.c, c.r, c.w = tc, bufio.NewReaderSize(tc, 4096), bufio.NewWriterSize(tc, 64<<10)
			if _, err := c.cmd(250, "EHLO sender.bench.test"); err != nil {
				tc.Close()
				return nil, err
			}
			break
		}
	}
	return c, nil
}

// reply reads one reply, multi-line or not, and checks its code.
func (c *smtpConn) reply(want int) (int, []string, error) {
	var lines []string
	for {
		c.c.SetReadDeadline(time.Now().Add(c.wait))
		l, err := c.r.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("smtp: reading a reply: %w", err)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return 0, nil, fmt.Errorf("smtp: bad reply %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return 0, nil, fmt.Errorf("smtp: bad reply %q", l)
		}
		rest := ""
		if len(l) > 4 {
			rest = l[4:]
		}
		lines = append(lines, rest)
		if len(l) == 3 || l[3] == ' ' {
			if code/100 != want/100 {
				return code, lines, &smtpError{code, strings.Join(lines, " ")}
			}
			return code, lines, nil
		}
	}
}

// cmd sends one command line and reads the reply.
func (c *smtpConn) cmd(want int, format string, args ...any) ([]string, error) {
	fmt.Fprintf(c.w, format+"\r\n", args...)
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	_, lines, err := c.reply(want)
	return lines, err
}

// send runs one mail transaction: MAIL, RCPT for each recipient, DATA with
// what body writes (CRLF lines, no line starting with a dot), and returns
// once the server has taken responsibility (the 250 after DATA).
func (c *smtpConn) send(from string, rcpts []string, body func(w io.Writer) error) error {
	if _, err := c.cmd(250, "MAIL FROM:<%s>", from); err != nil {
		return err
	}
	for _, r := range rcpts {
		if _, err := c.cmd(250, "RCPT TO:<%s>", r); err != nil {
			c.cmd(250, "RSET")
			return err
		}
	}
	if _, err := c.cmd(354, "DATA"); err != nil {
		return err
	}
	if err := body(c.w); err != nil {
		return err
	}
	io.WriteString(c.w, ".\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("smtp: writing the message: %w", err)
	}
	_, _, err := c.reply(250)
	return err
}

func (c *smtpConn) close() {
	c.cmd(221, "QUIT")
	c.c.Close()
}

// header writes a message's header fields.
func header(w io.Writer, from string, to []string, subject, msgid, contentType string) {
	fmt.Fprintf(w, "From: <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n",
		from, "<"+strings.Join(to, ">,\r\n <")+">", subject, time.Now().Format(time.RFC1123Z), msgid, contentType)
}

// mimeWithAttachment writes a multipart/mixed message: a short text and
// the file at path as a base64 attachment (76-character lines), streamed.
func mimeWithAttachment(from string, to []string, subject, msgid, path string) func(io.Writer) error {
	return func(w io.Writer) error {
		const boundary = "pullmail-bench-boundary"
		header(w, from, to, subject, msgid, `multipart/mixed; boundary="`+boundary+`"`)
		fmt.Fprintf(w, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe attachment.\r\n", boundary)
		fmt.Fprintf(w, "--%s\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"attachment.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary)
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		const line = 57 // bytes per 76-character line
		raw := make([]byte, line*1024)
		enc := make([]byte, 1024*78)
		for {
			n, err := io.ReadFull(in, raw)
			if n > 0 {
				o := 0
				for i := 0; i < n; i += line {
					j := min(i+line, n)
					base64.StdEncoding.Encode(enc[o:], raw[i:j])
					o += base64.StdEncoding.EncodedLen(j - i)
					enc[o], enc[o+1] = '\r', '\n'
					o += 2
				}
				if _, werr := w.Write(enc[:o]); werr != nil {
					return werr
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return err
			}
		}
		_, err = fmt.Fprintf(w, "--%s--\r\n", boundary)
		return err
	}
}

// textMessage writes a small text/plain message.
func textMessage(from string, to []string, subject, msgid, text string) func(io.Writer) error {
	return func(w io.Writer) error {
		header(w, from, to, subject, msgid, "text/plain; charset=utf-8")
		_, err := io.WriteString(w, text+"\r\n")
		return err
	}
}
