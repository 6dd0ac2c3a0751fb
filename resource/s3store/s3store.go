// Package s3store keeps a domain's resources in an S3-compatible bucket, so
// that several Pullmail nodes can share them. Bucket is a bucket.Bucket on
// S3 (minio-go); Open gives the resource.Store over it: resource/blobstore
// (plain bytes and chunk sums) or, with a key, resource/sealed (AES-256-GCM).
//
// # URL and credentials
//
//	s3://BUCKET/PREFIX?endpoint=URL&region=R
//
// endpoint is the S3 service (default https://s3.amazonaws.com); http:// is
// accepted only for a loopback host, since the bytes would cross the network
// in clear. The credentials come from the environment variables
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN too, when
// set). Options.CAFile trusts another CA, for an S3 server with a private
// certificate.
//
// # Keys
//
// An object named N (a Content-ID, or a Content-ID and ".sums") is kept
// under PREFIX/N[0:2]/N; uploads in progress go to PREFIX/tmp/<random>.
// PREFIX/fo/format records whether the resources are encrypted, and with
// which key (Bucket.Store). Nothing else under PREFIX is touched; keys that
// do not fit are skipped by List.
//
// # What is atomic
//
// S3 makes an object visible under its key at once and whole, when its PUT,
// its CompleteMultipartUpload or its CopyObject succeeds, and replaces the
// object that was there in the same step; parts of an upload that is never
// completed are never visible. So a Writer buffers one part (Options.PartSize)
// and:
//
//   - when the stream ends within the first part, its Commit is one PUT of
//     the verified bytes under the final key;
//   - when the name is known before the bytes are (a declared Content-ID,
//     bucket.CreateOptions.Name), it streams a multipart upload under the
//     final key itself and completes it only in Commit, after the digest
//     has matched; a mismatch aborts it and nothing ever appears;
//   - otherwise it streams a multipart upload under a temporary key,
//     completes it there in Commit, copies it server-side to the final key
//     (CopyObject, or UploadPartCopy above 5 GiB) and deletes the temporary
//     object.
//
// A crash can leave an incomplete multipart upload or a temporary object
// under PREFIX/tmp/: they are never read, and a bucket lifecycle rule
// (AbortIncompleteMultipartUpload, expiry of PREFIX/tmp/ after a day) clears
// them. Open does not clear them itself, since other nodes may be uploading.
//
// A Writer created with bucket.CreateOptions.Patch holds its first part back
// until Commit (parts may be uploaded in any order), so that a header
// computed at the end (resource/sealed's tag) is written in place. Memory
// per upload is therefore one part, or two with Patch, whatever the size.
//
// The bytes are sent with UNSIGNED-PAYLOAD (the requests are signed, their
// bodies are not hashed for the signature): the store verifies every chunk
// it reads against the Content-ID, and TLS protects them in transit, so a
// second SHA-256 of every byte for SigV4 would buy nothing but CPU.
//
// Modification times are kept to the second, as S3's Last-Modified is.
package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/blobstore"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/sealed"
)

// DefaultPartSize is the size of the parts of a multipart upload: the
// memory an upload holds. S3 refuses parts under 5 MiB (but the last), and
// an upload has at most 10,000 parts: 80 GiB at this size.
const DefaultPartSize = 8 << 20

// Config is what a resources URL says.
type Config struct {
	Bucket, Prefix string
	// Endpoint is host[:port] and Secure whether it is https.
	Endpoint string
	Secure   bool
	Region   string
}

// ParseURL reads s3://BUCKET/PREFIX?endpoint=URL&region=R.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("s3store: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return Config{}, fmt.Errorf("s3store: %q: want s3://BUCKET/PREFIX?endpoint=URL&region=R", raw)
	}
	c := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: "s3.amazonaws.com", Secure: true}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" {
			return Config{}, fmt.Errorf("s3store: %q: unknown parameter %q", raw, k)
		}
	}
	c.Region = q.Get("region")
	if ep := q.Get("endpoint"); ep != "" {
		e, err := url.Parse(ep)
		if err != nil || e.Host == "" || e.Path != "" && e.Path != "/" || e.RawQuery != "" || e.User != nil {
			return Config{}, fmt.Errorf("s3store: endpoint %q: want http(s)://HOST[:PORT]", ep)
		}
		switch e.Scheme {
		case "https":
		case "http":
			if !loopback(e.Hostname()) {
				return Config{}, fmt.Errorf("s3store: endpoint %q: http:// only on a loopback host; use https", ep)
			}
			c.Secure = false
		default:
			return Config{}, fmt.Errorf("s3store: endpoint %q: want http(s)://HOST[:PORT]", ep)
		}
		c.Endpoint = e.Host
	}
	for _, seg := range strings.Split(c.Prefix, "/") {
		if c.Prefix != "" && (seg == "" || seg == "." || seg == "..") {
			return Config{}, fmt.Errorf("s3store: prefix %q: empty or dot segment", c.Prefix)
		}
	}
	return c, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Options configure a Bucket and the store Open makes.
type Options struct {
	// Key, when set, encrypts every resource (resource/sealed); 32 bytes.
	Key []byte
	// CAFile is a PEM file of CAs to trust beside the system's.
	CAFile string
	// PartSize is the multipart part size (default DefaultPartSize, at
	// least 5 MiB).
	PartSize int
	// AccessKeyID and SecretAccessKey, when set, are used instead of the
	// environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	AccessKeyID, SecretAccessKey string
	// OnDamage and Log: see blobstore.Options.
	OnDamage func(resource.ID)
	Log      *slog.Logger
}

// Bucket is a bucket.Bucket on S3. It is safe for concurrent use.
type Bucket struct {
	c        *minio.Client
	core     minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int
}

var _ bucket.Bucket = (*Bucket)(nil)

// NewBucket connects to the bucket of cfg; it checks that the bucket exists.
func NewBucket(ctx context.Context, cfg Config, opt Options) (*Bucket, error) {
	id, secret := opt.AccessKeyID, opt.SecretAccessKey
	if id == "" && secret == "" {
		id, secret = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if id == "" || secret == "" {
		return nil, errors.New("s3store: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opt.CAFile != "" {
		pem, err := os.ReadFile(opt.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3store: CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3store: CA file %s: no certificate", opt.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN")),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		Transport:    tr,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	ps := opt.PartSize
	if ps == 0 {
		ps = DefaultPartSize
	}
	if ps < 5<<20 {
		return nil, fmt.Errorf("s3store: part size %d under S3's minimum of 5 MiB", ps)
	}
	b := &Bucket{c: c, core: minio.Core{Client: c}, bucket: cfg.Bucket, partSize: ps}
	if cfg.Prefix != "" {
		b.prefix = cfg.Prefix + "/"
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3store: bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3store: bucket %s at %s does not exist", cfg.Bucket, cfg.Endpoint)
	}
	return b, nil
}

// Open returns the resource store of the URL raw (see the package doc): the
// plain store of resource/blobstore, or with opt.Key the encrypted one of
// resource/sealed, over a Bucket.
func Open(ctx context.Context, raw string, opt Options) (resource.Store, error) {
	cfg, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	b, err := NewBucket(ctx, cfg, opt)
	if err != nil {
		return nil, err
	}
	return b.Store(ctx, opt)
}

// Store returns the resource store over b, as Open does. The bucket's
// "format" object (PREFIX/fo/format) records whether its resources are
// encrypted, and with which key (sealed.KeyCheck), as fsstore's format file
// does: a store opened with a missing, unexpected or other key fails here,
// rather than finding every resource damaged. A new prefix gets one.
func (b *Bucket) Store(ctx context.Context, opt Options) (resource.Store, error) {
	want := formatName + " plain\n"
	if opt.Key != nil {
		if len(opt.Key) != sealed.KeySize {
			return nil, fmt.Errorf("s3store: key is %d bytes, want %d", len(opt.Key), sealed.KeySize)
		}
		want = formatName + " aes-256-gcm key-check=" + sealed.KeyCheck(opt.Key) + "\n"
	}
	if err := b.checkFormat(ctx, want); err != nil {
		return nil, err
	}
	if opt.Key != nil {
		s, err := sealed.New(b, opt.Key, sealed.Options{OnDamage: opt.OnDamage, Log: opt.Log})
		if err != nil {
			return nil, fmt.Errorf("s3store: %w", err)
		}
		return s, nil
	}
	return blobstore.New(b, blobstore.Options{OnDamage: opt.OnDamage, Log: opt.Log}), nil
}

const (
	formatObject = "format"
	formatName   = "pullmail-s3store 1"
)

// Encrypted reports whether the store under b's prefix is encrypted at
// rest, from its format object, so that a tool opening a server's store
// (pullmail fsck) knows whether it needs the key, as fsstore.Encrypted
// does. A prefix with no store yet is not encrypted.
func (b *Bucket) Encrypted(ctx context.Context) (bool, error) {
	r, err := b.Read(ctx, formatObject, 0, -1)
	if errors.Is(err, bucket.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("s3store: reading the format object: %w", err)
	}
	got, err := io.ReadAll(io.LimitReader(r, 1<<10))
	r.Close()
	if err != nil {
		return false, fmt.Errorf("s3store: reading the format object: %w", err)
	}
	g := string(got)
	switch {
	case strings.HasPrefix(g, formatName+" aes"):
		return true, nil
	case strings.HasPrefix(g, formatName+" plain"):
		return false, nil
	}
	return false, fmt.Errorf("s3store: unknown store format %q", strings.TrimSpace(g))
}

func (b *Bucket) checkFormat(ctx context.Context, want string) error {
	r, err := b.Read(ctx, formatObject, 0, -1)
	if errors.Is(err, bucket.ErrNotExist) {
		w, err := b.Create(ctx, bucket.CreateOptions{})
		if err != nil {
			return err
		}
		defer w.Abort()
		if _, err := io.WriteString(w, want); err != nil {
			return err
		}
		if err := w.Commit(ctx, formatObject); err != nil {
			return fmt.Errorf("s3store: writing the format object: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("s3store: reading the format object: %w", err)
	}
	got, err := io.ReadAll(io.LimitReader(r, 1<<10))
	r.Close()
	if err != nil {
		return fmt.Errorf("s3store: reading the format object: %w", err)
	}
	g := string(got)
	switch {
	case subtle.ConstantTimeCompare(got, []byte(want)) == 1:
		return nil
	case !strings.HasPrefix(g, formatName+" "):
		return fmt.Errorf("s3store: unknown store format %q", strings.TrimSpace(g))
	case strings.HasPrefix(want, formatName+" aes") && strings.HasPrefix(g, formatName+" plain"):
		return errors.New("s3store: the store is not encrypted but a key was given")
	case strings.HasPrefix(want, formatName+" plain") && strings.HasPrefix(g, formatName+" aes"):
		return errors.New("s3store: the store is encrypted and no key was given")
	case strings.HasPrefix(g, formatName+" aes"):
		return errors.New("s3store: the store is encrypted with another key")
	}
	return fmt.Errorf("s3store: unknown store format %q", strings.TrimSpace(g))
}

// key is where the object name lives.
func (b *Bucket) key(name string) string {
	return b.prefix + name[:min(2, len(name))] + "/" + name
}

// name is the object name of key, or "" for a key that is not an object's
// (temporary uploads, anything else).
func (b *Bucket) name(key string) string {
	rest, ok := strings.CutPrefix(key, b.prefix)
	if !ok {
		return ""
	}
	dir, name, ok := strings.Cut(rest, "/")
	if !ok || !bucket.ValidName(name) || dir != name[:min(2, len(name))] {
		return ""
	}
	return name
}

func notExist(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey"
}

// Stat implements bucket.Bucket.
func (b *Bucket) Stat(ctx context.Context, name string) (bucket.Attrs, error) {
	if err := bucket.CheckName(name); err != nil {
		return bucket.Attrs{}, err
	}
	oi, err := b.c.StatObject(ctx, b.bucket, b.key(name), minio.StatObjectOptions{})
	if err != nil {
		if notExist(err) {
			return bucket.Attrs{}, fmt.Errorf("s3store: %s: %w", name, bucket.ErrNotExist)
		}
		return bucket.Attrs{}, fmt.Errorf("s3store: stat %s: %w", name, err)
	}
	return bucket.Attrs{Size: oi.Size, Modified: oi.LastModified.Truncate(time.Second)}, nil
}

// Read implements bucket.Bucket, with a ranged GET.
func (b *Bucket) Read(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if err := bucket.CheckName(name); err != nil {
		return nil, err
	}
	if n == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opt minio.GetObjectOptions
	var err error
	switch {
	case n > 0:
		err = opt.SetRange(off, off+n-1)
	case off > 0:
		err = opt.SetRange(off, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("s3store: read %s: %w", name, err)
	}
	r, _, _, err := b.core.GetObject(ctx, b.bucket, b.key(name), opt)
	if err != nil {
		if notExist(err) {
			return nil, fmt.Errorf("s3store: %s: %w", name, bucket.ErrNotExist)
		}
		return nil, fmt.Errorf("s3store: read %s: %w", name, err)
	}
	return r, nil
}

// Delete implements bucket.Bucket.
func (b *Bucket) Delete(ctx context.Context, name string) error {
	if err := bucket.CheckName(name); err != nil {
		return err
	}
	if err := b.c.RemoveObject(ctx, b.bucket, b.key(name), minio.RemoveObjectOptions{}); err != nil && !notExist(err) {
		return fmt.Errorf("s3store: delete %s: %w", name, err)
	}
	return nil
}

// List implements bucket.Bucket.
func (b *Bucket) List(ctx context.Context, fn func(string, bucket.Attrs) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for oi := range b.c.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix, Recursive: true}) {
		if oi.Err != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("s3store: list: %w", oi.Err)
		}
		name := b.name(oi.Key)
		if name == "" {
			continue
		}
		if err := fn(name, bucket.Attrs{Size: oi.Size, Modified: oi.LastModified.Truncate(time.Second)}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Create implements bucket.Bucket; see the package doc for how the Writer
// commits.
func (b *Bucket) Create(ctx context.Context, opt bucket.CreateOptions) (bucket.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opt.Name != "" {
		if err := bucket.CheckName(opt.Name); err != nil {
			return nil, err
		}
	}
	if opt.Patch > b.partSize {
		return nil, fmt.Errorf("s3store: %d patchable bytes, more than a part", opt.Patch)
	}
	return &writer{b: b, ctx: ctx, opt: opt}, nil
}

type writer struct {
	b     *Bucket
	ctx   context.Context
	opt   bucket.CreateOptions
	buf   []byte // the part being filled
	head  []byte // part 1, held back for Patch; nil when uploaded or not yet full
	key   string // the multipart upload's key
	id    string // its upload ID, once started
	parts []minio.CompletePart
	done  bool
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("s3store: write after commit or abort")
	}
	total := len(p)
	for len(p) > 0 {
		if len(w.buf) == w.b.partSize {
			if err := w.flush(); err != nil {
				return total - len(p), err
			}
		}
		k := min(len(p), w.b.partSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
	}
	return total, nil
}

// flush sends the full part in buf (or holds it, when it is part 1 of a
// patchable object), starting the multipart upload at the first one.
func (w *writer) flush() error {
	if w.id == "" {
		w.key = w.b.prefix + "tmp/" + rand.Text()
		if w.opt.Name != "" {
			w.key = w.b.key(w.opt.Name)
		}
		id, err := w.b.core.NewMultipartUpload(w.ctx, w.b.bucket, w.key, minio.PutObjectOptions{})
		if err != nil {
			return fmt.Errorf("s3store: starting an upload: %w", err)
		}
		w.id = id
		if w.opt.Patch > 0 {
			w.head, w.buf = w.buf, make([]byte, 0, w.b.partSize)
			w.parts = append(w.parts, minio.CompletePart{PartNumber: 1})
			return nil
		}
	}
	if err := w.upload(len(w.parts)+1, w.buf); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	return nil
}

func (w *writer) upload(n int, p []byte) error {
	if n > 10000 {
		return fmt.Errorf("s3store: more than 10,000 parts of %d bytes", w.b.partSize)
	}
	part, err := w.b.core.PutObjectPart(w.ctx, w.b.bucket, w.key, w.id, n, bytes.NewReader(p), int64(len(p)), minio.PutObjectPartOptions{DisableContentSha256: true})
	if err != nil {
		return fmt.Errorf("s3store: uploading part %d: %w", n, err)
	}
	cp := minio.CompletePart{PartNumber: n, ETag: part.ETag}
	if n <= len(w.parts) {
		w.parts[n-1] = cp
	} else {
		w.parts = append(w.parts, cp)
	}
	return nil
}

func (w *writer) Patch(p []byte, off int64) error {
	end := off + int64(len(p))
	switch {
	case off < 0 || end > int64(w.opt.Patch):
	case w.head != nil && end <= int64(len(w.head)):
		copy(w.head[off:], p)
		return nil
	case w.id == "" && end <= int64(len(w.buf)):
		copy(w.buf[off:], p)
		return nil
	}
	return fmt.Errorf("s3store: patch of %d bytes at %d outside the first %d written", len(p), off, w.opt.Patch)
}

func (w *writer) Commit(ctx context.Context, name string) error {
	if w.done {
		return errors.New("s3store: commit after commit or abort")
	}
	if err := bucket.CheckName(name); err != nil {
		return err
	}
	key := w.b.key(name)
	if w.id != "" && w.opt.Name != "" && name != w.opt.Name {
		// Completing would publish these bytes under the declared name.
		return fmt.Errorf("s3store: commit of %s, declared as %s", name, w.opt.Name)
	}
	if w.id == "" {
		// One part: one PUT of the whole, verified object.
		_, err := w.b.core.PutObject(ctx, w.b.bucket, key, bytes.NewReader(w.buf), int64(len(w.buf)), "", "", minio.PutObjectOptions{DisableContentSha256: true})
		if err != nil {
			return fmt.Errorf("s3store: put %s: %w", name, err)
		}
		w.done, w.buf = true, nil
		return nil
	}
	w.ctx = ctx
	if len(w.buf) > 0 {
		if err := w.upload(len(w.parts)+1, w.buf); err != nil {
			return err
		}
	}
	if w.head != nil {
		if err := w.upload(1, w.head); err != nil {
			return err
		}
	}
	w.buf, w.head = nil, nil
	parts := slices.Clone(w.parts)
	if _, err := w.b.core.CompleteMultipartUpload(ctx, w.b.bucket, w.key, w.id, parts, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("s3store: completing the upload of %s: %w", name, err)
	}
	w.id = "" // completed: nothing to abort
	if w.key == key {
		w.done = true
		return nil
	}
	defer w.removeTemp()
	_, err := w.b.c.ComposeObject(ctx,
		minio.CopyDestOptions{Bucket: w.b.bucket, Object: key},
		minio.CopySrcOptions{Bucket: w.b.bucket, Object: w.key})
	if err != nil {
		return fmt.Errorf("s3store: copying the upload of %s into place: %w", name, err)
	}
	return nil
}

// removeTemp deletes the temporary object of a completed upload.
func (w *writer) removeTemp() {
	w.done = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), time.Minute)
	defer cancel()
	w.b.c.RemoveObject(ctx, w.b.bucket, w.key, minio.RemoveObjectOptions{})
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done, w.buf, w.head = true, nil, nil
	if w.id == "" {
		return nil
	}
	// Abort even when the upload's context is cancelled: the parts cost
	// storage until then.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), time.Minute)
	defer cancel()
	if err := w.b.core.AbortMultipartUpload(ctx, w.b.bucket, w.key, w.id); err != nil {
		return fmt.Errorf("s3store: aborting an upload: %w", err)
	}
	return nil
}
