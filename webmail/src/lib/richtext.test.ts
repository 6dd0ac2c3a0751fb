// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';
import { htmlToText, textToHTML } from './compose';

describe('htmlToText', () => {
  it.each([
    ['<div>Hello <b>Bob</b></div><div><br></div><div>Bye</div>', 'Hello Bob\n\nBye\n'],
    ['<ul><li>one</li><li>two</li></ul>', '• one\n• two\n'],
    ['<p>See <a href="https://x.test/">the page</a></p>', 'See the page <https://x.test/>\n'],
  ])('%s', (html, want) => expect(htmlToText(html)).toBe(want));
  it('round-trips plain text', () => expect(htmlToText(textToHTML('a <b>\n\nc'))).toBe('a <b>\n\nc\n'));
});
