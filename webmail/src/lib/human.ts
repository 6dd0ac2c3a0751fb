// What the user reads when something goes wrong or arrives late: dates in
// one format (relative for recent mail), errors without "Failed to fetch",
// and delivery failures without the server's internals.
import { ApiError } from './types';

const MIN = 60_000;
const HOUR = 60 * MIN;

// formatDate is the one date format of the app: "now", "12 min ago" and
// "5 h ago" for the last day, then "Mar 5", and "Mar 5, 2025" before this
// year.
export function formatDate(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) return '';
  const d = new Date(iso);
  const ago = now.getTime() - d.getTime();
  if (ago < MIN && ago > -5 * MIN) return 'now';
  if (ago >= MIN && ago < HOUR) return `${Math.floor(ago / MIN)} min ago`;
  if (ago >= HOUR && ago < 24 * HOUR) return `${Math.floor(ago / HOUR)} h ago`;
  return d.toLocaleDateString('en', { year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric', month: 'short', day: 'numeric' });
}

// fullDate is the exact time, for a title attribute and the open message.
export function fullDate(iso: string | null | undefined): string {
  if (!iso) return '';
  return new Date(iso).toLocaleString('en', { dateStyle: 'medium', timeStyle: 'short' });
}

// offline tells a network failure (fetch's TypeError) from an answer.
export function offline(e: unknown): boolean {
  return e instanceof TypeError || (typeof navigator !== 'undefined' && navigator.onLine === false);
}

// humanError says what failed while doing what, in words: a network
// failure as being offline, an API error by its message.
export function humanError(e: unknown, doing: string): string {
  if (offline(e)) return `You are offline: ${doing} needs the server. Try again when you are back online.`;
  if (e instanceof ApiError) return `${doing[0]!.toUpperCase()}${doing.slice(1)} failed: ${e.message}`;
  return `${doing[0]!.toUpperCase()}${doing.slice(1)} failed: ${e instanceof Error ? e.message : String(e)}`;
}

// A delivery-status notice of §9 as the MTA writes it: "Your message <ID>
// could not be delivered to:", the recipients indented, then "The reason:"
// and the reason indented.
export interface Bounce {
  messageId: string;
  recipients: string[];
  reason: string; // as the server wrote it
  human: string; // what it means
}

export function isNotice(from: string, subject: string): boolean {
  return /^Undelivered mail/i.test(subject) && /(postmaster|mailer-daemon)@/i.test(from);
}

export function parseNotice(text: string): Bounce | null {
  const t = text.replace(/\r\n?/g, '\n');
  const id = /Your message (\S*) could not be delivered to:\n\n((?:[ \t]+\S.*\n)+)/.exec(t);
  if (!id) return null;
  const recipients = id[2]!.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('the recipients at'));
  const r = /The reason:\n\n([\s\S]*)$/.exec(t);
  const reason = (r?.[1] ?? '').trim();
  return { messageId: id[1]!, recipients, reason, human: humanReason(reason, recipients) };
}

// scrub removes what only the server's operator needs: resolver and peer
// addresses ("on 127.0.0.1:53", "dial tcp 10.0.0.1:443").
export function scrub(s: string): string {
  return s
    .replace(/\s+on\s+\[?[0-9a-f.:]+\]?:\d+/gi, '')
    .replace(/\b(?:dial tcp|read udp|write udp)\s+\[?[0-9a-f.:]+\]?:\d+(->\[?[0-9a-f.:]+\]?:\d+)?:?\s*/gi, '')
    .replace(/\b\d{1,3}(?:\.\d{1,3}){3}:\d+\b/g, 'the server');
}

function domainsOf(recipients: string[]): string {
  const ds = [...new Set(recipients.map((r) => r.split('@').pop()!.replace(/>$/, '')).filter(Boolean))];
  return ds.join(', ') || 'the recipient’s domain';
}

// humanReason turns a technical reason into a sentence a sender can act on.
export function humanReason(reason: string, recipients: string[]): string {
  const r = reason.toLowerCase();
  const d = domainsOf(recipients);
  if (/no such host|nxdomain|no_mail_host|takes no mail|no mx\b|not found.*(srv|mx)|no mail server|no pullmail record/.test(r)) return `The domain ${d} does not exist or does not accept mail. Check the address for a typo.`;
  if (/unknown (user|recipient)|no such (user|mailbox)|user unknown|550/.test(r)) return `${d} has no such mailbox. Check the address for a typo.`;
  if (/timeout|timed out|deadline|refused|unreachable|connection reset/.test(r)) return `The mail server of ${d} could not be reached for a long time, so the message was given up on.`;
  if (/too large|size/.test(r)) return `The message is too large for ${d}.`;
  return `${d} did not accept the message: ${scrub(reason)}`;
}

// snippet is the first words of a text body: no quoted lines, no "On …
// wrote:" line, white space collapsed.
export function snippet(text: string, max = 160): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const kept = lines.filter((l) => !l.startsWith('>') && !/^On .* wrote:\s*$/.test(l) && !/^-{5,} Forwarded message -{5,}$/.test(l.trim()));
  const s = kept.join(' ').replace(/\s+/g, ' ').trim();
  return s.length > max ? s.slice(0, max - 1).trimEnd() + '…' : s;
}
