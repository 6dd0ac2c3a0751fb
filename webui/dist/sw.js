// Pullmail webmail service worker (scope /webmail/): keeps the app shell so
// that the app starts offline; mail itself is in IndexedDB. The build fills
// in the list of files and a version derived from their contents.
const PRECACHE = ["./","assets/index-BXf5oE7M.js","favicon.ico","icon-192.png","icon-512.png","icon-maskable-512.png","icon.svg","manifest.webmanifest"];
const VERSION = "208e3892a740b97d";
const CACHE = `pullmail-shell-${VERSION}`;
const BASE = new URL('./', self.location).pathname; // /webmail/

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(PRECACHE.map((f) => new URL(f, self.location).href)))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('pullmail-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin || !url.pathname.startsWith(BASE)) return;
  if (req.mode === 'navigate') {
    // The network first (a new version), the cached shell when offline.
    event.respondWith(
      fetch(req).catch(() => caches.open(CACHE).then((c) => c.match(BASE)).then((r) => r || Response.error())),
    );
    return;
  }
  event.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
});
