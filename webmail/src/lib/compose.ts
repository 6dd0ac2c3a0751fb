// Reply, reply-all and forward: the fields of the new draft, built from the
// message they answer.
import { addrOf } from './address';
import { referencesOf } from './placeholder';
import type { Attachment, Message } from './types';

export type ComposeMode = 'new' | 'reply' | 'replyAll' | 'forward' | 'edit';

export interface ComposeInit {
  to: string;
  cc: string;
  bcc: string;
  subject: string;
  text: string;
  html?: string; // rich text: the body as (sanitised) HTML; text is its plain form
  inReplyTo?: string;
  references?: string[];
  forwarded: Attachment[]; // attachments carried over by a forward
}

export function prefixSubject(prefix: 'Re' | 'Fwd', subject: string): string {
  const re = prefix === 'Re' ? /^\s*re\s*:/i : /^\s*(fwd?|fw)\s*:/i;
  return re.test(subject) ? subject : `${prefix}: ${subject}`;
}

export function quote(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((l) => (l.startsWith('>') ? '>' + l : '> ' + l).trimEnd())
    .join('\n');
}

function dateLine(m: Message): string {
  return m.date ? new Date(m.date).toUTCString() : '';
}

export function replyInit(m: Message, body: string, mode: 'reply' | 'replyAll' | 'forward', me: string): ComposeInit {
  const self = me.toLowerCase();
  if (mode === 'forward') {
    const header = [
      '',
      '---------- Forwarded message ----------',
      `From: ${m.from}`,
      `Date: ${dateLine(m)}`,
      `Subject: ${m.subject}`,
      `To: ${m.to.join(', ')}`,
      '',
      '',
    ].join('\n');
    return { to: '', cc: '', bcc: '', subject: prefixSubject('Fwd', m.subject), text: header + body, forwarded: m.attachments };
  }
  // A reply to one's own sent message goes to its recipients.
  const fromMe = addrOf(m.from) === self;
  const to = fromMe ? m.to : [m.from];
  const cc: string[] = [];
  if (mode === 'replyAll') {
    const seen = new Set(to.map(addrOf));
    seen.add(self);
    for (const a of [...(fromMe ? [] : m.to), ...(m.cc ?? [])]) {
      const k = addrOf(a);
      if (!seen.has(k)) {
        seen.add(k);
        cc.push(a);
      }
    }
  }
  const intro = `\n\nOn ${dateLine(m)}, ${m.from} wrote:\n`;
  return {
    to: to.join(', '),
    cc: cc.join(', '),
    bcc: '',
    subject: prefixSubject('Re', m.subject),
    text: intro + quote(body) + '\n',
    inReplyTo: m.message_id,
    references: referencesOf(m),
    forwarded: [],
  };
}

// htmlToText is the text/plain alternative of a rich body: block elements
// and <br> become line ends, list items get a bullet, links keep their URL.
export function htmlToText(html: string): string {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  for (const a of Array.from(doc.querySelectorAll('a[href]'))) {
    const href = a.getAttribute('href') ?? '';
    if (href && href !== a.textContent) a.append(` <${href}>`);
  }
  for (const li of Array.from(doc.querySelectorAll('li'))) li.prepend('• ');
  for (const br of Array.from(doc.querySelectorAll('br'))) br.replaceWith('\n');
  for (const b of Array.from(doc.querySelectorAll('p, div, li, h1, h2, h3, blockquote, ul, ol'))) b.append('\n');
  return (doc.body.textContent ?? '').replace(/\n{3,}/g, '\n\n').replace(/[ \t]+\n/g, '\n').trim() + '\n';
}

// textToHTML starts a rich body from plain text (switching formatting on).
export function textToHTML(text: string): string {
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return text.split('\n').map((l) => `<div>${l ? esc(l) : '<br>'}</div>`).join('');
}
