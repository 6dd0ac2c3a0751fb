// Building the Placeholder Message document of a draft (docs/PROTOCOL.md §2,
// §3 and §8.8): headers written by the author, and one leaf per resource.
import type { Attachment, HeaderValue, Message, PlaceholderDoc, PlaceholderPart } from './types';

export interface Leaf {
  contentId: string; // bare, without angle brackets
  size: number;
  contentType: string; // the resource's own media type
  disposition?: 'inline' | 'attachment';
  filename?: string;
}

export interface DraftFields {
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  inReplyTo?: string;
  references?: string[];
  messageId?: string; // the draft's own Message-ID, kept on replace
  text: Leaf; // the text body (always present: the document needs a part)
  html?: Leaf; // a rich-text body: text and html then go as multipart/alternative
  attachments: Leaf[];
}

// externalBody is the first string of a leaf's Content-Type, spelled exactly
// as §3.2 requires of writers.
export function externalBody(size: number): string {
  return `message/external-body; access-type="x-content-addressed-uri"; hash-algorithm="sha256"; size="${size}"`;
}

// quoteParam quotes a MIME parameter value; non-ASCII names use RFC 2231.
export function dispositionHeader(disposition: string, filename?: string): string {
  if (filename === undefined || filename === '') return disposition;
  const clean = filename.replace(/[\r\n\0]/g, ' ');
  if (/^[\x20-\x7e]*$/.test(clean)) {
    return `${disposition}; filename="${clean.replace(/(["\\])/g, '\\$1')}"`;
  }
  const enc = encodeURIComponent(clean).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return `${disposition}; filename*=UTF-8''${enc}`;
}

export function leafPart(l: Leaf): PlaceholderPart {
  const headers: Record<string, HeaderValue> = {
    'Content-Type': [externalBody(l.size), l.contentType],
    'Content-ID': `<${l.contentId}>`,
  };
  if (l.disposition) headers['Content-Disposition'] = dispositionHeader(l.disposition, l.filename);
  return { headers };
}

export function buildDraft(f: DraftFields): PlaceholderDoc {
  const h: PlaceholderDoc['headers'] = { 'Content-Type': 'multipart/mixed' };
  if (f.to.length) h['To'] = f.to;
  if (f.cc.length) h['Cc'] = f.cc;
  if (f.bcc.length) h['Bcc'] = f.bcc;
  if (f.subject) h['Subject'] = f.subject.replace(/[\r\n]+/g, ' ');
  if (f.inReplyTo) h['In-Reply-To'] = f.inReplyTo;
  if (f.references && f.references.length) h['References'] = f.references.join(' ');
  if (f.messageId) h['Message-ID'] = f.messageId;
  // RFC 2046 §5.1.4: the plain alternative first, the preferred last.
  const parts = f.html
    ? [{ headers: { 'Content-Type': 'multipart/alternative' }, parts: [leafPart({ ...f.text, disposition: 'inline' }), leafPart({ ...f.html, disposition: 'inline' })] } as PlaceholderPart]
    : [leafPart({ ...f.text, disposition: 'inline' })];
  for (const a of f.attachments) parts.push(leafPart({ ...a, disposition: a.disposition ?? 'attachment' }));
  return { headers: h, parts };
}

export function leafOf(a: Attachment): Leaf {
  const l: Leaf = { contentId: a.content_id, size: a.size, contentType: a.content_type, disposition: 'attachment' };
  if (a.filename) l.filename = a.filename;
  return l;
}

// headerString returns a header of a stored document as one string.
export function headerString(doc: PlaceholderDoc | undefined, name: string): string {
  const v = doc?.headers[name];
  if (v === undefined) return '';
  return Array.isArray(v) ? v.join(' ') : v;
}

// referencesOf returns the References of a reply to m: m's own References
// (or In-Reply-To) followed by m's Message-ID (RFC 5322 §3.6.4).
export function referencesOf(m: Message): string[] {
  const prev = headerString(m.placeholder, 'References') || m.in_reply_to || '';
  const ids = prev.split(/\s+/).filter((s) => /^<[^<>\s]+@[^<>\s]+>$/.test(s));
  if (!ids.includes(m.message_id)) ids.push(m.message_id);
  return ids;
}

// inlineParts maps the Content-IDs that cid: URLs (RFC 2392) may name to the
// resource of each leaf: a part's original Content-ID (X-Original-Content-ID,
// §13.2, for mail from SMTP) and the resource's own (Pullmail's).
export function inlineParts(doc: PlaceholderDoc | undefined): Map<string, { contentId: string; contentType: string }> {
  const out = new Map<string, { contentId: string; contentType: string }>();
  const bare = (v: HeaderValue | undefined) => (Array.isArray(v) ? v[0] : v)?.trim().replace(/^<|>$/g, '') ?? '';
  const walk = (p: PlaceholderPart) => {
    if (p.parts) {
      for (const c of p.parts) walk(c);
      return;
    }
    const h = p.headers as Record<string, HeaderValue | undefined>;
    const id = bare(h['Content-ID']);
    if (!id) return;
    const ct = h['Content-Type'];
    const type = Array.isArray(ct) ? (ct[1] ?? '') : '';
    const leaf = { contentId: id, contentType: type };
    out.set(id, leaf);
    const orig = bare(h['X-Original-Content-ID']);
    if (orig) out.set(orig, leaf);
  };
  if (doc) for (const p of (doc.parts as PlaceholderPart[] | undefined) ?? []) walk(p);
  return out;
}
