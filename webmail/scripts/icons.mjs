// Draws the app's icons (an envelope on blue) as PNG and SVG files in
// public/, with no dependency: node scripts/icons.mjs. The output is
// committed; the script is deterministic.
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const BLUE = [29, 78, 216];
const WHITE = [255, 255, 255];

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

// envelope tells whether (x, y) in [0,1)² is on the white envelope, drawn in
// the central `inset` part of the square (maskable icons keep a safe zone).
function envelope(x, y, inset) {
  const lo = inset, hi = 1 - inset;
  const w = hi - lo;
  const left = lo, right = hi, top = lo + w * 0.2, bottom = hi - w * 0.2;
  if (x < left || x > right || y < top || y > bottom) return false;
  const stroke = w * 0.06;
  const border = x - left < stroke || right - x < stroke || y - top < stroke || bottom - y < stroke;
  // The flap: two lines from the top corners to the middle.
  const mx = (left + right) / 2, my = top + (bottom - top) * 0.55;
  const d1 = Math.abs((my - top) * (x - left) - (mx - left) * (y - top)) / Math.hypot(my - top, mx - left);
  const d2 = Math.abs((my - top) * (right - x) - (right - mx) * (y - top)) / Math.hypot(my - top, right - mx);
  const onFlap = (x <= mx && d1 < stroke / 2) || (x >= mx && d2 < stroke / 2);
  return border || (onFlap && y <= my + stroke);
}

function png(size, inset, round) {
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const fx = (x + 0.5) / size, fy = (y + 0.5) / size;
      let a = 255;
      if (round) {
        const r = 0.18, cx = Math.min(Math.max(fx, r), 1 - r), cy = Math.min(Math.max(fy, r), 1 - r);
        if (Math.hypot(fx - cx, fy - cy) > r) a = 0;
      }
      const c = envelope(fx, fy, inset) ? WHITE : BLUE;
      raw.set([...c, a], y * (size * 4 + 1) + 1 + x * 4);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

const out = new URL('../public/', import.meta.url);
writeFileSync(new URL('icon-192.png', out), png(192, 0.18, true));
writeFileSync(new URL('icon-512.png', out), png(512, 0.18, true));
writeFileSync(new URL('icon-maskable-512.png', out), png(512, 0.26, false));
writeFileSync(
  new URL('icon.svg', out),
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><rect width="100" height="100" rx="18" fill="#1d4ed8"/>` +
    `<g fill="none" stroke="#fff" stroke-width="4" stroke-linejoin="round"><rect x="20" y="32" width="60" height="37"/><path d="M20 32 L50 52 L80 32"/></g></svg>\n`,
);

// favicon.ico (served at /favicon.ico too): an ICO whose two images are
// PNGs (Windows Vista on, every browser), 32 and 48 pixels.
function ico(pngs) {
  const head = Buffer.alloc(6 + 16 * pngs.length);
  head.writeUInt16LE(0, 0);
  head.writeUInt16LE(1, 2);
  head.writeUInt16LE(pngs.length, 4);
  let offset = head.length;
  pngs.forEach(([size, data], i) => {
    const e = 6 + 16 * i;
    head.writeUInt8(size, e);
    head.writeUInt8(size, e + 1);
    head.writeUInt16LE(1, e + 4); // planes
    head.writeUInt16LE(32, e + 6); // bits per pixel
    head.writeUInt32LE(data.length, e + 8);
    head.writeUInt32LE(offset, e + 12);
    offset += data.length;
  });
  return Buffer.concat([head, ...pngs.map(([, d]) => d)]);
}
writeFileSync(new URL('favicon.ico', out), ico([[32, png(32, 0.18, true)], [48, png(48, 0.18, true)]]));
