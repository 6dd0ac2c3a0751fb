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

function hook(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook('uponSanitizeAttribute', (_node, data) => {
    const name = data.attrName.toLowerCase();
    if (LOADING_ATTRS.includes(name) && !localURL(data.attrValue)) data.keepAttr = false;
    if (name === 'style' && /url\s*\(|expression\s*\(|@import/i.test(data.attrValue)) data.keepAttr = false;
  });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
}

// sanitizeHTML returns a safe body fragment.
export function sanitizeHTML(html: string): string {
  hook();
  return DOMPurify.sanitize(html, {
    FORBID_TAGS: ['script', 'iframe', 'frame', 'frameset', 'object', 'embed', 'applet', 'link', 'meta', 'base', 'form', 'input', 'button', 'textarea', 'select', 'style', 'svg', 'math', 'video', 'audio', 'source', 'track'],
    FORBID_ATTR: ['srcset', 'ping'],
    ALLOW_DATA_ATTR: false,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|data:image\/|blob:|cid:|#)/i,
  });
}

// frameDocument is the srcdoc of the iframe that shows a sanitised body.
export function frameDocument(safeBody: string): string {
  return (
    '<!doctype html><html><head><meta charset="utf-8">' +
    `<meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}">` +
    '<base target="_blank">' +
    '<style>body{font:15px/1.5 system-ui,sans-serif;color:#1b1f24;margin:0;padding:0 2px;overflow-wrap:anywhere}img{max-width:100%;height:auto}</style>' +
    `</head><body>${safeBody}</body></html>`
  );
}

// FRAME_SANDBOX: no allow-scripts, so nothing in the body runs; same origin
// (safe without scripts) lets the app size the frame to its content; links
// open in a new tab outside the sandbox.
export const FRAME_SANDBOX = 'allow-same-origin allow-popups allow-popups-to-escape-sandbox';
