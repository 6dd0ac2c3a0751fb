// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';
import { FRAME_CSP, frameDocument, sanitizeHTML } from './sanitize';

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
