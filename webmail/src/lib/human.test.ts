import { describe, expect, it } from 'vitest';
import { formatDate, humanError, humanReason, isNotice, parseNotice, scrub, snippet } from './human';
import { ApiError } from './types';
import { withSignature } from '../ui/Settings';

describe('formatDate', () => {
  const now = new Date('2026-06-15T12:00:00Z');
  it.each([
    ['2026-06-15T11:59:40Z', 'now'],
    ['2026-06-15T11:48:00Z', '12 min ago'],
    ['2026-06-15T07:00:00Z', '5 h ago'],
    ['2026-03-05T10:00:00Z', 'Mar 5'],
    ['2025-03-05T10:00:00Z', 'Mar 5, 2025'],
  ])('%s is %s', (iso, want) => expect(formatDate(iso, now)).toBe(want));
  it('says nothing for no date', () => expect(formatDate(null, now)).toBe(''));
});

describe('notices', () => {
  const text = 'Your message <x@a.test> could not be delivered to:\n\n    bob@nowhere.test\n    eve@nowhere.test\n\nThe mail system at a.test gave up on it. The reason:\n\n    discovering nowhere.test: lookup _pullmail._tcp.nowhere.test on 127.0.0.1:40053: no such host\n';
  it('parses the MTA’s notice', () => {
    const b = parseNotice(text)!;
    expect(b.messageId).toBe('<x@a.test>');
    expect(b.recipients).toEqual(['bob@nowhere.test', 'eve@nowhere.test']);
    expect(b.reason).toContain('no such host');
    expect(b.human).toBe('The domain nowhere.test does not exist or does not accept mail. Check the address for a typo.');
    expect(b.human).not.toMatch(/127\.0\.0\.1/);
  });
  it('is not fooled by other mail', () => expect(parseNotice('hello')).toBeNull());
  it('knows a notice by its sender and subject', () => {
    expect(isNotice('Mail Delivery System <postmaster@a.test>', 'Undelivered mail: bob@x.test')).toBe(true);
    expect(isNotice('Bob <bob@x.test>', 'Undelivered mail: bob@x.test')).toBe(false);
  });
  it.each([
    ['lookup x on 127.0.0.1:53: server misbehaving', 'lookup x: server misbehaving'],
    ['dial tcp 10.1.2.3:443: connect: oops', 'connect: oops'],
  ])('scrubs %s', (s, want) => expect(scrub(s)).toBe(want));
  it('keeps an unknown reason, scrubbed', () => expect(humanReason('quota on 10.0.0.1:25 exceeded', ['a@b.test'])).toBe('b.test did not accept the message: quota exceeded'));
});

describe('humanError', () => {
  it('says offline instead of Failed to fetch', () => expect(humanError(new TypeError('Failed to fetch'), 'the download')).toMatch(/^You are offline: the download needs the server/));
  it('keeps the API’s message', () => expect(humanError(new ApiError(409, 'not_ready', 'not arrived yet'), 'the download')).toBe('The download failed: not arrived yet'));
});

describe('snippet', () => {
  it('skips quotes and collapses space', () => expect(snippet('Thanks!\n\nSee you\n\nOn Mon, Bob wrote:\n> hi\n> there')).toBe('Thanks! See you'));
  it('cuts long text', () => expect(snippet('word '.repeat(100), 20)).toBe('word word word word…'));
});

describe('humanReason', () => {
  it.each([
    ['discovering nowhere.test: no_mail_host: nowhere.test has no SRV _federizer._rs._tcp.nowhere.test record, no MX and no address: it takes no mail', 'The domain nowhere.test does not exist or does not accept mail. Check the address for a typo.'],
    ['550 5.1.1 user unknown', 'nowhere.test has no such mailbox. Check the address for a typo.'],
    ['dial tcp 10.0.0.1:25: i/o timeout', 'The mail server of nowhere.test could not be reached for a long time, so the message was given up on.'],
  ])('%s', (reason, want) => expect(humanReason(reason, ['bob@nowhere.test'])).toBe(want));
});

describe('withSignature', () => {
  it.each([
    ['', 'Carol', '\n\n-- \nCarol'],
    ['\n\nOn Mon, Bob wrote:\n> hi', 'Carol\nb.test', '\n\n-- \nCarol\nb.test\n\n\nOn Mon, Bob wrote:\n> hi'],
    ['text', '  ', 'text'],
  ])('%j with %j', (text, sig, want) => expect(withSignature(text, sig)).toBe(want));
});
