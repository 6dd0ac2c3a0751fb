// Package mailfile reads and writes the files other mail software keeps mail
// in: mbox (RFC 4155; the mboxrd and mboxo variants) and Maildir
// (cr.yp.to/proto/maildir.html, with the ":2,FLAGS" info suffix). It is what
// `pullmail import` and `pullmail export` stand on; converting the messages
// is mimeconv's work, storing them the mailbox's.
//
// Everything streams: a message is an io.Reader over the file, read through
// a buffer of fixed size (readBuffer), so memory stays constant whatever the
// size of a file, a message or a line.
//
// # mbox
//
// A message begins with a From_ line ("From " at the start of a line) and
// ends before the next one, or at the end of the file. The writer ends every
// message with one line end of its own (a blank line when the message ends
// with one), and the reader takes exactly that one line end away again, so
// that any message, one without a final line end included, comes back byte
// for byte. Lines of the message that would read as a From_ line are quoted:
// mboxrd quotes any line matching `>*From ` with one more '>' and the reader
// takes one away; mboxo files (whose writers quoted only `From `) are read
// by taking the '>' from `>From ` only. Both line ends, LF and CRLF, are read;
// the bytes of a message are never changed otherwise.
//
// # Maildir
//
// A Maildir is a directory with tmp/, new/ and cur/. Each message is one file
// of new/ or cur/, named "UNIQUE" or "UNIQUE:2,FLAGS", FLAGS being letters in
// ASCII order: D (draft), F (flagged), P (passed), R (replied), S (seen),
// T (trashed). The writer writes each file in tmp/, syncs it, and renames it
// into cur/, as the specification asks.
package mailfile
