// End-to-end test of the webmail in Debian's headless Chromium, driven by
// playwright-core (no browser download):
//
//   node e2e/webmail.e2e.mjs DEV_DATA_DIR OUT_DIR
//
// DEV_DATA_DIR is the directory of a running 'pullmail dev' (its dev.json
// lists the domains, servers and users with passwords). alice@a.test signs
// in through the real login page and sends carol@b.test a message with a
// few MiB attachment; carol, signed in on b.test in another context, sees
// it arrive without reloading, opens it, downloads the attachment (checked
// byte for byte with SHA-256), finds it by searching as she types, deletes
// it and undoes that, reads it again
// offline, archives it, deletes it to trash, restores it, and deletes it for
// good from trash. Screenshots go
// to OUT_DIR. Exits non-zero on any failure.
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import tls from 'node:tls';
import { chromium } from 'playwright-core';

const [dataDir, outDir] = process.argv.slice(2);
if (!dataDir || !outDir) {
  console.error('usage: node e2e/webmail.e2e.mjs DEV_DATA_DIR OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const dev = JSON.parse(readFileSync(join(dataDir, 'dev.json'), 'utf8'));
const A = dev.domains['a.test'].url;
const B = dev.domains['b.test'].url;
const alice = { addr: 'alice@a.test', ...dev.users['alice@a.test'] };
const carol = { addr: 'carol@b.test', ...dev.users['carol@b.test'] };
const TIMEOUT = 90_000;

function log(...a) {
  console.log(new Date().toISOString().slice(11, 23), ...a);
}

// spki returns the base64 SHA-256 of a server certificate's public key, for
// --ignore-certificate-errors-spki-list: Chromium then accepts the sandbox's
// certificates as valid, which service workers need.
function spki(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false, servername: undefined }, () => {
      const der = s.getPeerCertificate(true).raw;
      s.end();
      const key = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
      resolve(createHash('sha256').update(key).digest('base64'));
    });
    s.on('error', reject);
  });
}

// apiGet reads the mailbox API as user (their dev token), to check what
// the server holds rather than what the page shows.
const ca = readFileSync(join(dataDir, 'ca.pem'));
function apiGet(user, path) {
  return new Promise((resolve, reject) => {
    const req = https.get(new URL(path, user.server), { ca, headers: { Authorization: `Bearer ${user.token}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`GET ${path}: ${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(outDir, `${name}.png`), fullPage: false });
  log('screenshot', name);
}

async function signIn(browser, origin, user, name) {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => log(`[${name}] page error:`, e.message));
  page.on('console', (m) => m.type() === 'error' && log(`[${name}] console:`, m.text()));
  await page.goto(`${origin}/webmail/`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/oauth\/authorize/);
  await page.fill('#username', user.addr);
  await page.fill('#password', user.password);
  if (name === 'alice') await shot(page, '01-sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor({ timeout: TIMEOUT });
  await page.getByText(user.addr).first().waitFor();
  log(`${user.addr} signed in`);
  return { ctx, page };
}

const work = mkdtempSync(join(tmpdir(), 'webmail-e2e-'));
let browser;
try {
  const keys = [...new Set([await spki(A), await spki(B)])];
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${keys.join(',')}`,
    ],
  });

  // carol first: the message must arrive while she looks.
  const c = await signIn(browser, B, carol, 'carol');
  const a = await signIn(browser, A, alice, 'alice');
  await shot(a.page, '02-inbox-alice');

  const payload = randomBytes(3 * 1024 * 1024 + 12345);
  const want = createHash('sha256').update(payload).digest('hex');
  const file = join(work, 'random.bin');
  writeFileSync(file, payload);
  const subject = `Webmail e2e ${Date.now()}`;
  const text = 'Hello Carol,\nthis came through the webmail with an attachment.';

  await a.page.getByRole('button', { name: 'Compose' }).click();
  await a.page.fill('#to', 'Carol <carol@b.test>');
  await a.page.fill('#subject', subject);
  await a.page.fill('#body', text);
  await a.page.setInputFiles('#files', file);
  await a.page.getByText('uploaded').waitFor({ timeout: TIMEOUT });
  await a.page.getByText(/Draft saved/).waitFor({ timeout: TIMEOUT });
  await shot(a.page, '03-compose');
  await a.page.getByRole('button', { name: 'Send' }).click();
  await a.page.getByTestId('compose').waitFor({ state: 'detached', timeout: TIMEOUT });
  log('sent');

  // carol: no reload; SSE (or polling) brings it.
  const row = c.page.getByRole('option').filter({ hasText: subject });
  await row.waitFor({ timeout: TIMEOUT });
  log('arrived in carol’s inbox');
  await shot(c.page, '04-inbox-carol');
  await row.click();
  const conv = c.page.getByTestId('conversation');
  await conv.getByText('this came through the webmail').waitFor({ timeout: TIMEOUT });
  // The attachment is pulled from a.test: wait until the message is complete.
  await c.page.waitForFunction(() => !document.querySelector('[data-testid="conversation"]')?.textContent?.includes('fetching…'), null, { timeout: TIMEOUT });
  await shot(c.page, '05-message');
  const [dl] = await Promise.all([
    c.page.waitForEvent('download', { timeout: TIMEOUT }),
    conv.getByRole('button', { name: 'Download random.bin' }).click(),
  ]);
  const got = createHash('sha256').update(readFileSync(await dl.path())).digest('hex');
  if (got !== want) throw new Error(`downloaded attachment differs: sha256 ${got}, want ${want}`);
  log('attachment byte-identical, sha256', got);

  // Search as you type: a word of the body finds it (the server's index);
  // a word of no message finds nothing; Escape clears.
  const search = c.page.getByTestId('search');
  await search.click();
  const t0 = Date.now();
  await search.pressSequentially('came thr', { delay: 30 });
  const t1 = Date.now();
  const results = c.page.getByRole('listbox', { name: /^Results for/ });
  await results.getByRole('option').filter({ hasText: subject }).waitFor({ timeout: TIMEOUT });
  log(`search as you type: the result ${Date.now() - t1} ms after the last key (${Date.now() - t0} ms after the first; ${150} ms of it the debounce)`);
  await shot(c.page, '05a-search');
  await search.fill('zebrafish');
  await c.page.getByText('Nothing matches “zebrafish”.').waitFor({ timeout: TIMEOUT });
  await search.press('Escape');
  await c.page.getByRole('listbox', { name: 'Messages in Inbox' }).waitFor({ timeout: TIMEOUT });

  // Delete moves to trash with an Undo; Undo puts it back in the inbox.
  const toast = c.page.getByTestId('toast');
  const inInbox = () => c.page.getByRole('listbox', { name: 'Messages in Inbox' }).getByRole('option').filter({ hasText: subject });
  await conv.getByRole('button', { name: 'Delete', exact: true }).click();
  await toast.getByText('Moved to Trash').waitFor({ timeout: TIMEOUT });
  await inInbox().waitFor({ state: 'detached', timeout: TIMEOUT });
  await shot(c.page, '05b-deleted-undo');
  await toast.getByRole('button', { name: 'Undo' }).click();
  await toast.getByText('Restored to Inbox').waitFor({ timeout: TIMEOUT });
  await inInbox().waitFor({ timeout: TIMEOUT });
  log('delete undone');
  // The server agrees: the message is in carol's inbox, her trash is empty.
  const where = async () => {
    const l = await apiGet(carol, '/api/v1/messages?folder=trash');
    const i = await apiGet(carol, '/api/v1/messages?folder=inbox');
    return { trash: l.messages.length, inbox: i.messages.some((m) => m.subject === subject) };
  };
  const after = await where();
  if (after.trash !== 0 || !after.inbox) throw new Error(`after Undo the server has ${JSON.stringify(after)}`);
  const nav = c.page.getByRole('navigation', { name: 'Folders' });
  await nav.getByRole('button', { name: /^Trash/ }).click();
  await c.page.getByText('No messages in Trash.').waitFor({ timeout: TIMEOUT });
  await nav.getByRole('button', { name: /^Inbox/ }).click();
  await inInbox().click();
  await conv.getByText('this came through the webmail').waitFor({ timeout: TIMEOUT });

  // Offline: the app shell from the service worker, the mail from IndexedDB.
  await c.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await c.page.reload(); // be controlled by the service worker
  await c.page.getByRole('button', { name: 'Sign out' }).waitFor({ timeout: TIMEOUT });
  await c.ctx.setOffline(true);
  await c.page.reload();
  await c.page.getByText('Offline').first().waitFor({ timeout: TIMEOUT });
  await c.page.getByRole('option').filter({ hasText: subject }).click();
  await c.page.getByTestId('conversation').getByText('this came through the webmail').waitFor({ timeout: TIMEOUT });
  await shot(c.page, '06-offline');
  log('readable offline');
  await c.ctx.setOffline(false);

  // Archive, then Delete from the archive: Trash lists it, Restore puts it
  // back in the archive; the key # deletes too, and from Trash it can go
  // for good.
  await conv.getByRole('button', { name: 'Archive' }).click();
  await toast.getByText('Moved to Archive').waitFor({ timeout: TIMEOUT });
  await nav.getByRole('button', { name: /^Archive/ }).click();
  const inFolder = (label) => c.page.getByRole('listbox', { name: `Messages in ${label}` }).getByRole('option').filter({ hasText: subject });
  await inFolder('Archive').click();
  await conv.getByRole('button', { name: 'Delete', exact: true }).click();
  await toast.getByText('Moved to Trash').waitFor({ timeout: TIMEOUT });
  await nav.getByRole('button', { name: /^Trash/ }).click();
  await inFolder('Trash').click();
  await shot(c.page, '06b-trash');
  await conv.getByRole('button', { name: 'Restore' }).click();
  await toast.getByText('Restored to Archive').waitFor({ timeout: TIMEOUT });
  await nav.getByRole('button', { name: /^Archive/ }).click();
  await inFolder('Archive').click();
  await c.page.keyboard.press('#');
  await toast.getByText('Moved to Trash').waitFor({ timeout: TIMEOUT });
  await nav.getByRole('button', { name: /^Trash/ }).click();
  await inFolder('Trash').click();
  c.page.once('dialog', (d) => void d.accept());
  await conv.getByRole('button', { name: 'Delete forever' }).click();
  await toast.getByText('Deleted forever').waitFor({ timeout: TIMEOUT });
  await c.page.getByText('No messages in Trash.').waitFor({ timeout: TIMEOUT });
  const gone = await where();
  if (gone.trash !== 0 || gone.inbox) throw new Error(`after Delete forever the server has ${JSON.stringify(gone)}`);
  log('archive, trash, restore and delete forever');

  // Phone width: one pane at a time.
  await c.page.setViewportSize({ width: 390, height: 800 });
  await shot(c.page, '07-phone-message');

  // Sign-out revokes and clears the local copy.
  await a.page.getByRole('button', { name: 'Sign out' }).click();
  await a.page.getByRole('button', { name: 'Sign in' }).waitFor();
  log('alice signed out');
  console.log('webmail e2e: 1 passed, 0 failed');
} catch (e) {
  console.error('webmail e2e FAILED:', e);
  process.exitCode = 1;
} finally {
  await browser?.close();
  rmSync(work, { recursive: true, force: true });
}
