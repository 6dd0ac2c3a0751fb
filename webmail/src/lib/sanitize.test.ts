// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';
import { FRAME_CSP, cidsOf, frameDocument, sanitizeBody, sanitizeHTML } from './sanitize';

describe('sanitizeHTML', () => {
  it('removes scripts and handlers', () => {
    const out = sanitizeHTML('<p onclick="x()">hi<script>alert(1)</script><img src=x onerror="alert(1)"></p><a href="javascript:alert(1)">j</a>');
    expect(out).not.toMatch(/script|onclick|onerror|javascript:/i);
    expect(out).toContain('hi');
  });
  it('drops remote loads', () => {
    const out = sanitizeHTML(
      '<img src="https://tracker.example/p.gif"><div style="background:url(https://x.example/a.png)">t</div>' +
        '<link rel=stylesheet href="https://x.example/s.css"><style>@import url(https://x.example/s.css)</style><iframe src="https://x.example"></iframe>',
    );
    expect(out).not.toMatch(/tracker|x\.example/);
    expect(out).toContain('t');
  });
  it('keeps inline images, formatting and links', () => {
    const out = sanitizeHTML('<p style="color:red"><b>bold</b> <img src="data:image/png;base64,AAAA" alt="a"> <a href="https://example.org/">link</a></p>');
    expect(out).toContain('<b>bold</b>');
    expect(out).toContain('src="data:image/png;base64,AAAA"');
    expect(out).toContain('href="https://example.org/"');
    expect(out).toContain('target="_blank"');
    expect(out).toContain('style="color:red"');
  });
  it('wraps the body with the frame CSP', () => {
    const doc = frameDocument('<p>x</p>');
    expect(doc).toContain(`content="${FRAME_CSP}"`);
    expect(doc).toContain('<body><p>x</p></body>');
  });
});

describe('images', () => {
  it('resolves cid: from the message and blocks remote images with words', () => {
    const r = sanitizeBody('<p><img src="cid:logo@x" alt="Logo"><img src="https://track.example/p.gif" width="1" height="1"><img src="cid:missing@x"></p>', {
      cid: (id) => (id === 'logo@x' ? 'blob:https://a.test/1234' : undefined),
    });
    expect(r.html).toContain('src="blob:https://a.test/1234"');
    expect(r.html).not.toContain('track.example');
    expect(r.html).toContain('>[image]</span>');
    expect(r.html).not.toContain('<img src="cid');
    expect(r.html).toMatch(/<img src="blob:[^"]*" alt="Logo">/);
    expect(r.blocked).toBe(1);
  });
  it('counts remote backgrounds', () => {
    expect(sanitizeBody('<div style="background:url(http://x.example/a.png)">x</div>').blocked).toBe(1);
  });
  it('finds the cid: URLs', () => expect(cidsOf('<img src="cid:a%40b"><img src=\'cid:c@d\'>')).toEqual(['a@b', 'c@d']));
});
