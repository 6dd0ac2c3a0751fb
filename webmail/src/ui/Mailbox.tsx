// The signed-in screen: folders | list | conversation on a desktop, one
// pane at a time on a phone.
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import styled from 'styled-components';
import { replyInit, type ComposeInit } from '../lib/compose';
import type { MailController } from '../lib/controller';
import { correspondents } from '../lib/contacts';
import { getBody, kvGet, kvSet } from '../lib/db';
import { humanError, isNotice, parseNotice, snippet } from '../lib/human';
import { sanitizeHTML } from '../lib/sanitize';
import { folderList, threadOf } from '../lib/sync';
import { FOLDERS, TRASH_DAYS, folderLabel, type Folder, type Message } from '../lib/types';
import { Compose, LOCAL_DRAFT, takeLocal, type LocalDraft } from './Compose';
import { Conversation, loadBody, type ReplyMode } from './Conversation';
import { MessageList } from './MessageList';
import { Settings, withSignature, type Prefs } from './Settings';
import { Shortcuts } from './Shortcuts';
import { Button, Muted } from './common';
import { applyScheme, theme, type Scheme } from './theme';

type Pane = 'folders' | 'list' | 'main';

const Shell = styled.div<{ $pane: Pane }>`
  display: grid;
  grid-template-columns: 12rem minmax(22rem, 1fr) minmax(24rem, 1.3fr);
  grid-template-rows: auto 1fr;
  height: 100%;
  > header { grid-column: 1 / -1; display: flex; align-items: center; gap: 0.75rem; padding: 0.5rem 1rem; border-bottom: 1px solid ${theme.border}; background: ${theme.panel}; min-width: 0; }
  > header h1 { font-size: 1.1rem; margin: 0; }
  > header .search { flex: 1; min-width: 6rem; max-width: 32rem; }
  > header .search input { width: 100%; padding: 0.4rem 0.6rem; border: 1px solid ${theme.border}; border-radius: 6px; background: ${theme.bg}; color: ${theme.text}; }
  > header .me { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
  > header button { white-space: nowrap; }
  > main { display: contents; }
  > nav, > main > .list, > main > .reading { min-height: 0; min-width: 0; display: flex; flex-direction: column; }
  > nav { border-right: 1px solid ${theme.border}; padding: 0.75rem; gap: 0.25rem; overflow-y: auto; }
  > main > .list { border-right: 1px solid ${theme.border}; }
  .menu, .back, .fab, .theme-narrow, .me-narrow { display: none; }
  @media (max-width: ${theme.narrow}) {
    grid-template-columns: minmax(0, 1fr);
    > header { flex-wrap: wrap; gap: 0.4rem 0.5rem; padding: 0.4rem 0.6rem; }
    > header h1 { flex: 1; }
    > header .me, > header .theme { display: none; }
    > header .search { order: 10; flex-basis: 100%; max-width: none; }
    > nav { display: ${(p) => (p.$pane === 'folders' ? 'flex' : 'none')}; border: 0; }
    > main > .list { display: ${(p) => (p.$pane === 'list' ? 'flex' : 'none')}; border: 0; }
    > main > .reading { display: ${(p) => (p.$pane === 'main' ? 'flex' : 'none')}; }
    .menu, .back, .theme-narrow, .me-narrow { display: inline-block; }
    .fab { display: ${(p) => (p.$pane === 'main' ? 'none' : 'block')}; position: fixed; right: 1rem; bottom: 1rem; padding: 0.8rem 1.2rem; border-radius: 999px; box-shadow: 0 3px 10px rgba(0, 0, 0, 0.3); z-index: 5; }
  }
`;

const FolderButton = styled.button<{ $current: boolean }>`
  text-align: left;
  padding: 0.5rem 0.75rem;
  border: 0;
  border-radius: 6px;
  background: ${(p) => (p.$current ? theme.accentSoft : 'transparent')};
  color: ${theme.text};
  font-weight: ${(p) => (p.$current ? 600 : 400)};
  cursor: pointer;
  display: flex;
  justify-content: space-between;
  gap: 0.5rem;
  > span:first-child { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
`;

// Toast tells what an action did, with its Undo, at the bottom of the screen.
const ToastBox = styled.div`
  position: fixed;
  left: 50%;
  bottom: 1.25rem;
  transform: translateX(-50%);
  display: flex;
  align-items: center;
  gap: 1rem;
  padding: 0.6rem 0.75rem 0.6rem 1rem;
  border-radius: 8px;
  background: ${theme.toast};
  color: #fff;
  z-index: 10;
  box-shadow: 0 4px 16px rgba(0, 0, 0, 0.25);
  max-width: calc(100vw - 2rem);
  button { background: transparent; color: #fff; border-color: #fff; }
  @media (max-width: ${theme.narrow}) { bottom: 5rem; }
`;

// TOAST_MS is how long an Undo stays offered.
const TOAST_MS = 10_000;

// SEARCH_DEBOUNCE_MS is how long after the last key a search goes out.
const SEARCH_DEBOUNCE_MS = 150;

type Toast = { text: string; undo?: () => Promise<void>; key: number };

const Status = styled.span`
  font-size: 0.85rem;
  color: ${theme.muted};
  white-space: nowrap;
`;

type ComposeState = { init: ComposeInit; draft?: Message | { id: string; message_id: string }; forwardFrom?: string; restored?: boolean; failure?: string; key: number };

// WATCH_MS is how long after a send the app watches for a delivery-failure
// notice, to reopen the words with the failure.
const WATCH_MS = 5 * 60_000;

// SNIPPETS is how many rows of a list get their snippet (their text bodies
// are fetched and kept); SNIPPET_MAX_BYTES leaves out long texts.
const SNIPPETS = 80;
const SNIPPET_MAX_BYTES = 64 << 10;

const emptyInit = (): ComposeInit => ({ to: '', cc: '', bcc: '', subject: '', text: '', forwarded: [] });

export function Mailbox({ ctl, onSignOut }: { ctl: MailController; onSignOut: () => void }) {
  const st = useSyncExternalStore(ctl.subscribe, ctl.get);
  const [folder, setFolder] = useState<Folder>('inbox');
  const [selected, setSelected] = useState<string | null>(null);
  const [opened, setOpened] = useState<string | null>(null);
  const [compose, setCompose] = useState<ComposeState | null>(null);
  const [pane, setPane] = useState<Pane>('list');
  const [toast, setToast] = useState<Toast | null>(null);
  // Search as you type (§8.19): the server's index, a moment after the
  // last key; an answer to an older query is dropped.
  const [query, setQuery] = useState('');
  const [found, setFound] = useState<{ q: string; ids: string[]; error?: string } | null>(null);
  const searchBox = useRef<HTMLInputElement>(null);
  useEffect(() => {
    const q = query.trim();
    if (!q) {
      setFound(null);
      return;
    }
    const abort = new AbortController();
    const t = setTimeout(async () => {
      try {
        const l = await ctl.api.search(q, abort.signal);
        setFound({ q, ids: l.messages.map((m) => m.id) });
      } catch (e) {
        if (!abort.signal.aborted) setFound({ q, ids: [], error: e instanceof Error ? e.message : String(e) });
      }
    }, SEARCH_DEBOUNCE_MS);
    return () => {
      clearTimeout(t);
      abort.abort();
    };
  }, [query, ctl.api, st.messages]);
  const toastTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const [help, setHelp] = useState(false);
  const [scheme, setScheme] = useState<Scheme>('system');
  const [signature, setSignature] = useState('');
  const [settings, setSettings] = useState(false);
  // The words of the last sends, by Message-ID, until a notice says they
  // were not delivered (they reopen) or WATCH_MS passes.
  const watching = useRef(new Map<string, { init: ComposeInit; until: number }>());
  const [snippets, setSnippets] = useState<ReadonlyMap<string, string>>(new Map());

  // A form open at the last reload (or close, offline) opens again.
  useEffect(() => {
    let live = true;
    void kvGet<LocalDraft>(LOCAL_DRAFT).catch(() => undefined).then((db) => {
      const d = takeLocal(db);
      if (!live || !d) return;
      setCompose({ key: Date.now(), init: d.init, draft: d.draft ?? undefined, restored: true });
      setPane('main');
    }, () => {});
    void kvGet<string>('signature').then((s) => live && s && setSignature(s), () => {});
    void kvGet<Scheme>('scheme').then((s) => {
      if (live && s) {
        setScheme(s);
        applyScheme(s);
      }
    }, () => {});
    return () => {
      live = false;
    };
  }, []);

  function savePrefs(p: Prefs) {
    setSettings(false);
    setSignature(p.signature);
    void kvSet('signature', p.signature).catch(() => {});
    setScheme(p.scheme);
    applyScheme(p.scheme);
    void kvSet('scheme', p.scheme).catch(() => {});
    say('Settings saved');
  }

  const schemeLabel = scheme === 'dark' ? 'Dark' : scheme === 'light' ? 'Light' : 'Auto';
  function changeScheme() {
    const next: Scheme = scheme === 'system' ? 'dark' : scheme === 'dark' ? 'light' : 'system';
    setScheme(next);
    applyScheme(next);
    void kvSet('scheme', next).catch(() => {});
  }

  const searching = query.trim() !== '';
  const list = useMemo(() => {
    if (!searching) return folderList(st.messages.values(), folder);
    // The local copies, fresher than the answer: a message moved or
    // deleted meanwhile shows as it is (the next answer drops it).
    return (found?.ids ?? []).map((id) => st.messages.get(id)).filter((m): m is Message => m !== undefined);
  }, [st.messages, folder, searching, found]);
  // Snippets: the first words of the rows on screen, from the text bodies
  // (kept in IndexedDB, so they are there offline and fetched once).
  useEffect(() => {
    let live = true;
    const want = list.slice(0, SNIPPETS).filter((m) => m.text && m.text.size <= SNIPPET_MAX_BYTES && !snippets.has(m.id) && m.status !== 'fetching');
    if (want.length === 0) return;
    void (async () => {
      const got = new Map<string, string>();
      for (const m of want) {
        try {
          const kept = await getBody(m.id, m.text!.content_id);
          const text = kept ?? (st.online ? await loadBody(ctl.api, m, m.text!) : undefined);
          got.set(m.id, text === undefined ? '' : snippet(text));
        } catch {
          got.set(m.id, '');
        }
        if (!live) return;
      }
      setSnippets((old) => new Map([...old, ...got]));
    })();
    return () => {
      live = false;
    };
  }, [list, ctl.api, st.online]); // eslint-disable-line react-hooks/exhaustive-deps

  const unreadIn = useMemo(() => {
    const n = new Map<Folder, number>();
    for (const m of st.messages.values()) if (!m.seen && m.status !== 'sent' && m.status !== 'draft') n.set(m.folder, (n.get(m.folder) ?? 0) + 1);
    return n;
  }, [st.messages]);
  const unread = unreadIn.get('inbox') ?? 0;
  const folders: Folder[] = useMemo(() => [...FOLDERS, ...st.folders.map((f) => f.name)], [st.folders]);
  // Delivery-failure notices by the Message-ID they are about (their
  // In-Reply-To): the Sent item shows its failure.
  const notices = useMemo(() => {
    const n = new Map<string, Message>();
    for (const m of st.messages.values()) if (m.in_reply_to && m.folder !== 'trash' && isNotice(m.from, m.subject)) n.set(m.in_reply_to, m);
    return n;
  }, [st.messages]);
  const contacts = useMemo(() => correspondents(st.messages.values(), st.me?.address ?? ''), [st.messages, st.me]);
  const failedSends = useMemo(() => new Set(notices.keys()), [notices]);

  // A notice about a send being watched reopens its words with the failure.
  useEffect(() => {
    for (const [id, w] of watching.current) {
      if (Date.now() > w.until) {
        watching.current.delete(id);
        continue;
      }
      const n = notices.get(id);
      if (!n) continue;
      watching.current.delete(id);
      void (async () => {
        let why = 'The mail system gave up on it.';
        try {
          if (n.text) {
            const b = parseNotice(await loadBody(ctl.api, n, n.text));
            if (b) why = `Not delivered to ${b.recipients.join(', ')}. ${b.human}`;
          }
        } catch {
          /* the generic words */
        }
        setCompose({ key: Date.now(), init: w.init, failure: why });
        setPane('main');
        say(`Not delivered: ${w.init.subject || '(no subject)'}`);
      })();
    }
  }, [notices, ctl.api]);

  const openMsg = opened ? st.messages.get(opened) : undefined;
  const thread = useMemo(() => (openMsg ? threadOf(st.messages.values(), openMsg) : []), [st.messages, openMsg]);

  useEffect(() => {
    document.title = unread ? `(${unread}) Inbox · Pullmail` : 'Pullmail';
  }, [unread]);

  async function open(id: string) {
    setSelected(id);
    const m = st.messages.get(id);
    if (m?.folder === 'drafts') {
      const full = (await ctl.full(id)) ?? m;
      let text = '';
      let html: string | undefined;
      try {
        if (full.text) text = await loadBody(ctl.api, full, full.text);
        if (full.html) html = sanitizeHTML(await loadBody(ctl.api, full, full.html));
      } catch {
        /* offline */
      }
      const refs = (full.placeholder?.headers['References'] as string | undefined)?.split(/\s+/);
      setCompose({
        key: Date.now(),
        draft: full,
        init: { to: full.to.join(', '), cc: (full.cc ?? []).join(', '), bcc: (full.bcc ?? []).join(', '), subject: full.subject, text, html, inReplyTo: full.in_reply_to, references: refs, forwarded: full.attachments },
      });
      setPane('main');
      return;
    }
    setCompose(null);
    setOpened(id);
    setPane('main');
    if (m && !m.seen) void ctl.markSeen(m, true);
  }

  function newMessage() {
    setCompose({ key: Date.now(), init: { ...emptyInit(), text: withSignature('', signature) } });
    setPane('main');
  }

  // closeCompose puts the focus where the user goes next: the message
  // they answered, else the list.
  function closeCompose(sent?: Message, fields?: ComposeInit) {
    setCompose(null);
    if (sent && fields) {
      watching.current.set(sent.message_id, { init: fields, until: Date.now() + WATCH_MS });
      say(`Message sent to ${[...sent.to, ...(sent.cc ?? [])].join(', ') || 'its recipients'}`);
    }
    if (!opened) setPane('list');
    requestAnimationFrame(() => {
      const h = document.querySelector<HTMLElement>('[data-testid="conversation"] h2');
      if (opened && h) h.focus();
      else focusList();
    });
  }

  function focusList() {
    const row = document.querySelector<HTMLElement>('[data-testid="message-list"] [role="option"][tabindex="0"]');
    (row ?? document.querySelector<HTMLElement>('nav[aria-label="Folders"] [aria-current="page"]'))?.focus();
  }

  async function reply(m: Message, mode: ReplyMode) {
    const full = (await ctl.full(m.id)) ?? m;
    let body = '';
    try {
      if (full.text) body = await loadBody(ctl.api, full, full.text);
    } catch {
      /* quote nothing */
    }
    const init = replyInit(full, body, mode, st.me?.address ?? '');
    setCompose({ key: Date.now(), init: { ...init, text: withSignature(init.text, signature) }, forwardFrom: mode === 'forward' ? m.id : undefined });
    setPane('main');
  }

  useEffect(() => () => clearTimeout(toastTimer.current), []);

  function say(text: string, undo?: () => Promise<void>) {
    clearTimeout(toastTimer.current);
    setToast({ text, undo, key: Date.now() });
    toastTimer.current = setTimeout(() => setToast(null), TOAST_MS);
  }

  function failed(e: unknown, doing = 'that') {
    say(humanError(e, doing));
  }

  // leave closes the open message: it has left the folder on screen.
  function leave() {
    setOpened(null);
    setPane('list');
  }

  // remove moves a message to trash, with an Undo; in trash it asks, then
  // deletes for good.
  async function remove(m: Message) {
    try {
      if (m.folder === 'trash') {
        if (!confirm(`Delete “${m.subject || '(no subject)'}” forever? This cannot be undone.`)) return;
        await ctl.purge(m);
        leave();
        say('Deleted forever');
        return;
      }
      const trashed = await ctl.trash(m);
      leave();
      say(`Moved to Trash (kept ${TRASH_DAYS} days)`, async () => {
        const back = await ctl.restore(trashed);
        say(`Restored to ${folderLabel(back.folder)}`);
      });
    } catch (e) {
      failed(e, 'deleting');
    }
  }

  // move files a message elsewhere, with an Undo that moves it back.
  async function move(m: Message, to: Folder) {
    try {
      const from = m.folder;
      const moved = await ctl.moveTo(m, to);
      leave();
      say(`Moved to ${folderLabel(to)}`, async () => {
        await ctl.moveTo(moved, from);
        say(`Moved back to ${folderLabel(from)}`);
      });
    } catch (e) {
      failed(e, 'moving');
    }
  }

  async function restore(m: Message) {
    try {
      const back = await ctl.restore(m);
      leave();
      say(`Restored to ${folderLabel(back.folder)}`);
    } catch (e) {
      failed(e, 'restoring');
    }
  }

  async function newFolder() {
    const name = prompt('Name of the new folder')?.trim();
    if (!name) return;
    try {
      await ctl.createFolder(name);
      say(`Folder “${name}” added`);
    } catch (e) {
      failed(e, 'adding the folder');
    }
  }

  async function undo(t: Toast) {
    setToast(null);
    try {
      await t.undo?.();
    } catch (e) {
      failed(e, 'undoing');
    }
  }

  // Keyboard shortcuts (not while typing; ? lists them): c compose, /
  // search, j/k next/previous, r/a/f reply, reply all, forward, e archive,
  // # delete, Escape back to the list.
  const current = thread.length > 0 && !compose ? thread[thread.length - 1] : undefined;
  useEffect(() => {
    function step(by: number) {
      if (list.length === 0) return;
      const at = list.findIndex((m) => m.id === (opened ?? selected));
      const next = list[Math.max(0, Math.min(list.length - 1, at < 0 ? 0 : at + by))]!;
      void open(next.id);
    }
    function onKey(e: KeyboardEvent) {
      const t = e.target as HTMLElement | null;
      if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented || t?.closest('input, textarea, select, [contenteditable], dialog')) return;
      const k = e.key;
      const act = (f: () => void) => {
        e.preventDefault();
        f();
      };
      if (k === '?') act(() => setHelp(true));
      else if (k === '/') act(() => searchBox.current?.focus());
      else if (k === 'c' && !compose) act(newMessage);
      else if (k === 'j') act(() => step(1));
      else if (k === 'k') act(() => step(-1));
      else if (k === 'Escape' && opened && !compose) act(() => { leave(); requestAnimationFrame(focusList); });
      else if (!current) return;
      else if (k === 'r') act(() => void reply(current, 'reply'));
      else if (k === 'a') act(() => void reply(current, 'replyAll'));
      else if (k === 'f') act(() => void reply(current, 'forward'));
      else if (k === '#') act(() => void remove(current));
      else if (k === 'e' && current.folder !== 'archive' && current.folder !== 'trash' && current.folder !== 'drafts') act(() => void move(current, 'archive'));
    }
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  });

  const statusText = !st.online ? 'Offline' : st.syncing ? 'Syncing…' : st.live ? 'Live' : 'Up to date';
  const statusTitle = !st.online ? 'Offline: showing what was synced; changes go to the server when you are back online' : st.live ? 'Up to date: new mail shows as it arrives' : statusText;

  return (
    <Shell $pane={pane}>
      <header>
        <Button type="button" className="menu" aria-label="Folders" onClick={() => setPane('folders')}>☰</Button>
        <h1>Pullmail</h1>
        <search className="search">
          <input
            ref={searchBox}
            type="search"
            aria-label="Search mail"
            aria-keyshortcuts="/"
            placeholder="Search (from: to: subject: has:attachment in:)"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            onKeyDown={(e) => { if (e.key === 'Escape') setQuery(''); }}
            data-testid="search"
          />
        </search>
        <Status role="status" aria-live="polite" title={statusTitle} data-testid="sync-status">{statusText}</Status>
        <Muted className="me">{st.me?.address}</Muted>
        <Button type="button" className="theme" onClick={changeScheme} aria-label={`Colour scheme: ${schemeLabel}`} title="Light, dark or as the system">
          <span aria-hidden="true">{scheme === 'dark' ? '☾' : scheme === 'light' ? '☀' : '◐'}</span> {schemeLabel}
        </Button>
        <Button type="button" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts" aria-keyshortcuts="?">?</Button>
        <Button type="button" onClick={onSignOut}>Sign out</Button>
      </header>
      <nav aria-label="Folders">
        <Button type="button" $primary onClick={newMessage} aria-keyshortcuts="c">
          Compose
        </Button>
        {folders.map((f) => {
          const n = f === 'trash' || f === 'junk' ? 0 : (unreadIn.get(f) ?? 0);
          return (
            <FolderButton key={f} type="button" $current={f === folder} aria-current={f === folder ? 'page' : undefined} onClick={() => { setFolder(f); setQuery(''); setOpened(null); setPane('list'); requestAnimationFrame(focusList); }}>
              <span>{folderLabel(f)}</span>
              {n > 0 && <span aria-label={`${n} unread`}>{n}</span>}
            </FolderButton>
          );
        })}
        <Button type="button" onClick={() => void newFolder()}>New folder</Button>
        <Button type="button" onClick={() => setSettings(true)}>Settings</Button>
        <Button type="button" className="theme-narrow" onClick={changeScheme}>{`Colours: ${scheme === 'system' ? 'as the system' : scheme}`}</Button>
        <Muted className="me-narrow" style={{ fontSize: '0.85rem', overflowWrap: 'anywhere' }}>{st.me?.address}</Muted>
        {st.error && <p role="alert" style={{ color: theme.danger }}>{st.error}</p>}
      </nav>
      <main>
      <section className="list" aria-label={`${folderLabel(folder)} messages`}>
        {folder === 'trash' && <Muted style={{ padding: '0.5rem 0.9rem', fontSize: '0.85rem' }}>Messages in Trash are deleted for good after {TRASH_DAYS} days.</Muted>}
        {searching && found?.error && <p role="alert" style={{ padding: '0.5rem 0.9rem', color: theme.danger }}>{found.error}</p>}
        <MessageList folder={folder} label={searching ? `Results for “${query.trim()}”` : undefined}
          empty={searching ? (found ? `Nothing matches “${query.trim()}”.` : 'Searching…') : undefined} messages={list} selected={selected} onSelect={setSelected} onOpen={(id) => void open(id)}
          snippets={snippets} failed={failedSends} />
        <Button type="button" $primary className="fab" onClick={newMessage}>Compose</Button>
      </section>
      <section className="reading" aria-label="Reading pane">
        <div className="back" style={{ padding: '0.5rem 1rem 0' }}>
          <Button type="button" onClick={() => setPane('list')}>← Back</Button>
        </div>
        {compose ? (
          <Compose key={compose.key} ctl={ctl} init={compose.init} draft={compose.draft} forwardFrom={compose.forwardFrom} restored={compose.restored} failure={compose.failure} contacts={contacts} onClose={closeCompose} />
        ) : thread.length > 0 ? (
          <Conversation
            api={ctl.api}
            thread={thread}
            folders={folders}
            onReply={(m, mode) => void reply(m, mode)}
            onDelete={(m) => void remove(m)}
            onMove={(m, to) => void move(m, to)}
            onRestore={(m) => void restore(m)}
            onSeen={(m, seen) => void ctl.markSeen(m, seen)}
            noticeFor={(m) => notices.get(m.message_id)}
          />
        ) : (
          <p style={{ padding: '1rem', color: theme.muted }}>{st.loaded ? 'Select a message to read it.' : 'Loading…'}</p>
        )}
      </section>
      </main>
      {help && <Shortcuts onClose={() => setHelp(false)} />}
      {settings && <Settings prefs={{ signature, scheme }} onSave={savePrefs} onClose={() => setSettings(false)} />}
      {toast && (
        <ToastBox key={toast.key} role="status" aria-live="polite" data-testid="toast">
          <span>{toast.text}</span>
          {toast.undo && <Button type="button" onClick={() => void undo(toast)}>Undo</Button>}
        </ToastBox>
      )}
    </Shell>
  );
}
