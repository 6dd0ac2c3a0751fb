import { describe, expect, it } from 'vitest';
import { buildDraft, dispositionHeader, externalBody, referencesOf } from './placeholder';
import { prefixSubject, quote, replyInit } from './compose';
import type { Message } from './types';

const text = { contentId: '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU', size: 0, contentType: 'text/plain; charset=UTF-8' };

describe('buildDraft', () => {
  it('writes the §2.6 shape', () => {
    const doc = buildDraft({
      to: ['Bob <bob@b.test>'],
      cc: [],
      bcc: ['c@b.test'],
      subject: 'Hi',
      text,
      attachments: [{ contentId: 'ip99_OfSds57bVDTRHHAeCclthViZ01xTQ_iLZpz4dg', size: 3520247, contentType: 'image/png', filename: 'Venice.png' }],
    });
    expect(doc).toEqual({
      headers: { 'Content-Type': 'multipart/mixed', To: ['Bob <bob@b.test>'], Bcc: ['c@b.test'], Subject: 'Hi' },
      parts: [
        {
          headers: {
            'Content-Type': [externalBody(0), 'text/plain; charset=UTF-8'],
            'Content-ID': '<47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU>',
            'Content-Disposition': 'inline',
          },
        },
        {
          headers: {
            'Content-Type': [
              'message/external-body; access-type="x-content-addressed-uri"; hash-algorithm="sha256"; size="3520247"',
              'image/png',
            ],
            'Content-ID': '<ip99_OfSds57bVDTRHHAeCclthViZ01xTQ_iLZpz4dg>',
            'Content-Disposition': 'attachment; filename="Venice.png"',
          },
        },
      ],
    });
  });
  it('leaves out empty headers and keeps reply headers', () => {
    const doc = buildDraft({ to: [], cc: [], bcc: [], subject: '', text, attachments: [], inReplyTo: '<a@x.test>', references: ['<z@x.test>', '<a@x.test>'], messageId: '<d@x.test>' });
    expect(doc.headers).toEqual({ 'Content-Type': 'multipart/mixed', 'In-Reply-To': '<a@x.test>', References: '<z@x.test> <a@x.test>', 'Message-ID': '<d@x.test>' });
  });
  it('encodes filenames', () => {
    expect(dispositionHeader('attachment', 'a "b".txt')).toBe('attachment; filename="a \\"b\\".txt"');
    expect(dispositionHeader('attachment', 'été.pdf')).toBe("attachment; filename*=UTF-8''%C3%A9t%C3%A9.pdf");
    expect(dispositionHeader('inline')).toBe('inline');
  });
});

const m: Message = {
  id: 'm1', message_id: '<m1@a.test>', thread_id: '<t@a.test>', folder: 'inbox', status: 'complete', seen: false,
  from: 'Alice <alice@a.test>', to: ['carol@b.test', 'Dan <dan@b.test>'], cc: ['eve@c.test', 'alice@a.test'],
  subject: 'Plans', date: '2025-03-01T10:20:00Z', created: '', updated: '', size: 1, attachments: [],
  placeholder: { headers: { 'Content-Type': 'multipart/mixed', References: '<r0@a.test>' }, parts: [] },
};

describe('replies', () => {
  it('prefixes subjects once', () => {
    expect(prefixSubject('Re', 'Plans')).toBe('Re: Plans');
    expect(prefixSubject('Re', 'RE: Plans')).toBe('RE: Plans');
    expect(prefixSubject('Fwd', 'Fw: x')).toBe('Fw: x');
  });
  it('quotes text', () => {
    expect(quote('a\n> b\n')).toBe('> a\n>> b\n>');
  });
  it('threads a reply', () => {
    const r = replyInit(m, 'hello', 'reply', 'carol@b.test');
    expect(r.to).toBe('Alice <alice@a.test>');
    expect(r.cc).toBe('');
    expect(r.inReplyTo).toBe('<m1@a.test>');
    expect(r.references).toEqual(['<r0@a.test>', '<m1@a.test>']);
    expect(referencesOf(m)).toEqual(['<r0@a.test>', '<m1@a.test>']);
  });
  it('replies to all but me', () => {
    const r = replyInit(m, 'hello', 'replyAll', 'carol@b.test');
    expect(r.cc).toBe('Dan <dan@b.test>, eve@c.test');
  });
  it('forwards attachments without threading', () => {
    const r = replyInit({ ...m, attachments: [{ content_id: 'x', size: 1, content_type: 'a/b' }] }, 'body', 'forward', 'carol@b.test');
    expect(r.subject).toBe('Fwd: Plans');
    expect(r.inReplyTo).toBeUndefined();
    expect(r.forwarded).toHaveLength(1);
    expect(r.text).toContain('From: Alice <alice@a.test>');
  });
});

describe('rich text', () => {
  it('sends text and html as multipart/alternative, plain first', () => {
    const doc = buildDraft({ to: ['a@x.test'], cc: [], bcc: [], subject: 's', attachments: [],
      text: { contentId: 'T', size: 1, contentType: 'text/plain; charset=UTF-8' }, html: { contentId: 'H', size: 2, contentType: 'text/html; charset=UTF-8' } });
    const alt = (doc.parts as { headers: Record<string, unknown>; parts?: { headers: Record<string, unknown> }[] }[])[0]!;
    expect(alt.headers['Content-Type']).toBe('multipart/alternative');
    expect(alt.parts!.map((p) => p.headers['Content-ID'])).toEqual(['<T>', '<H>']);
    expect((alt.parts![1]!.headers['Content-Type'] as string[])[1]).toBe('text/html; charset=UTF-8');
  });
});
