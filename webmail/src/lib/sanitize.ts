// HTML bodies are the sender's: they are sanitised with DOMPurify and shown in
// an <iframe sandbox> (no scripts) whose document carries its own CSP, so that
// nothing in them runs or loads anything from the network.
import DOMPurify from 'dompurify';

export const FRAME_CSP = "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'";

// Attributes that may name a URL the browser would load on its own.
const LOADING_ATTRS = ['src', 'srcset', 'background', 'poster', 'lowsrc', 'dynsrc', 'data', 'xlink:href', 'action', 'formaction'];

function localURL(v: string): boolean {
  return /^\s*(data:image\/|blob:|cid:)/i.test(v);
}

let hooked = false;

// The sanitisation under way: how cid: URLs resolve, and what was blocked.
// DOMPurify's hooks are global, and a sanitize call runs synchronously, so
// one slot is enough.
let run: { cid: (id: string) => string | undefined; blocked: number } = { cid: () => undefined, blocked: 0 };

// BLOCKED_STYLE is how a blocked remote image shows: its alt text in a
// dashed box, never the browser's broken-image icon.
const BLOCKED_STYLE = 'display:inline-block;border:1px dashed #8a8f98;padding:2px 6px;color:#4b5563;font-size:12px';

function hook(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook('uponSanitizeAttribute', (node, data) => {
    const name = data.attrName.toLowerCase();
    if (name === 'src' && /^\s*cid:/i.test(data.attrValue)) {
      // An inline part of the message itself (RFC 2392): its blob URL.
      const url = run.cid(data.attrValue.trim().slice(4));
      if (url) data.attrValue = url;
      else data.keepAttr = false;
      return;
    }
    if (LOADING_ATTRS.includes(name) && !localURL(data.attrValue)) {
      if (/^\s*(https?:)?\/\//i.test(data.attrValue) && (name === 'src' || name === 'background')) {
        run.blocked++;
        if (node.tagName === 'IMG') node.setAttribute('data-pm-blocked', '');
      }
      data.keepAttr = false;
    }
    if (name === 'style' && /url\s*\(|expression\s*\(|@import/i.test(data.attrValue)) {
      if (/url\s*\(\s*['"]?\s*(https?:)?\/\//i.test(data.attrValue)) run.blocked++;
      data.keepAttr = false;
    }
  });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
    node.removeAttribute('data-pm-blocked');
  });
}

export interface SanitizeOptions {
  // cid resolves the Content-ID of a cid: URL to a blob: or data: URL.
  cid?: (id: string) => string | undefined;
}

export interface Sanitized {
  html: string;
  blocked: number; // remote images and backgrounds left out
}

// sanitizeHTML returns a safe body fragment.
export function sanitizeHTML(html: string): string {
  return sanitizeBody(html).html;
}

// sanitizeBody sanitises and tells how many remote images it blocked.
export function sanitizeBody(html: string, opts: SanitizeOptions = {}): Sanitized {
  hook();
  run = { cid: opts.cid ?? (() => undefined), blocked: 0 };
  const out = clean(html);
  const blocked = run.blocked;
  run = { cid: () => undefined, blocked: 0 };
  return { html: out, blocked };
}

// cidsOf lists the Content-IDs that cid: URLs of html name, decoded.
export function cidsOf(html: string): string[] {
  const out = new Set<string>();
  for (const m of html.matchAll(/cid:([^"'\s)>]+)/gi)) {
    try {
      out.add(decodeURIComponent(m[1]!));
    } catch {
      out.add(m[1]!);
    }
  }
  return [...out];
}

// clean sanitises, then puts words where an image has no source (remote,
// or a cid: the message lacks), never the browser's broken-image icon.
function clean(html: string): string {
  const body = purify(html);
  for (const img of Array.from(body.querySelectorAll('img:not([src])'))) {
    const alt = img.getAttribute('alt')?.trim();
    const span = body.ownerDocument.createElement('span');
    span.setAttribute('style', BLOCKED_STYLE);
    span.setAttribute('data-blocked-image', '');
    span.textContent = alt ? `[image: ${alt}]` : '[image]';
    img.replaceWith(span);
  }
  return body.innerHTML;
}

function purify(html: string): HTMLElement {
  return DOMPurify.sanitize(html, {
    RETURN_DOM: true,
    FORBID_TAGS: ['script', 'iframe', 'frame', 'frameset', 'object', 'embed', 'applet', 'link', 'meta', 'base', 'form', 'input', 'button', 'textarea', 'select', 'style', 'svg', 'math', 'video', 'audio', 'source', 'track'],
    FORBID_ATTR: ['srcset', 'ping'],
    ALLOW_DATA_ATTR: false,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|data:image\/|blob:|cid:|#)/i,
  }) as HTMLElement;
}

// frameDocument is the srcdoc of the iframe that shows a sanitised body.
export function frameDocument(safeBody: string): string {
  return (
    '<!doctype html><html><head><meta charset="utf-8">' +
    `<meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}">` +
    '<base target="_blank">' +
    '<style>:root{color-scheme:light}body{font:15px/1.5 system-ui,sans-serif;color:#1b1f24;background:#fff;margin:0;padding:4px 6px;overflow-wrap:anywhere}img{max-width:100%;height:auto}</style>' +
    `</head><body>${safeBody}</body></html>`
  );
}

// FRAME_SANDBOX: no allow-scripts, so nothing in the body runs; same origin
// (safe without scripts) lets the app size the frame to its content; links
// open in a new tab outside the sandbox.
export const FRAME_SANDBOX = 'allow-same-origin allow-popups allow-popups-to-escape-sandbox';
