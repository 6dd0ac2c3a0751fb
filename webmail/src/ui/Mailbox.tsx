// The signed-in screen: folders | list | conversation on a desktop, one
// pane at a time on a phone.
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import styled from 'styled-components';
import { replyInit, type ComposeInit } from '../lib/compose';
import type { MailController } from '../lib/controller';
import { folderList, threadOf } from '../lib/sync';
import { FOLDERS, TRASH_DAYS, folderLabel, type Folder, type Message } from '../lib/types';
import { Compose } from './Compose';
import { Conversation, loadBody, type ReplyMode } from './Conversation';
import { MessageList } from './MessageList';
import { Button, Muted } from './common';
import { theme } from './theme';

type Pane = 'folders' | 'list' | 'main';

const Shell = styled.div<{ $pane: Pane }>`
  display: grid;
  grid-template-columns: 12rem minmax(16rem, 24rem) 1fr;
  grid-template-rows: auto 1fr;
  height: 100%;
  > header { grid-column: 1 / -1; display: flex; align-items: center; gap: 0.75rem; padding: 0.5rem 1rem; border-bottom: 1px solid ${theme.border}; background: ${theme.panel}; }
  > header h1 { font-size: 1.1rem; margin: 0; }
  > header .search { flex: 1; min-width: 6rem; max-width: 32rem; }
  > header .search input { width: 100%; padding: 0.4rem 0.6rem; border: 1px solid ${theme.border}; border-radius: 6px; background: ${theme.bg}; color: ${theme.text}; }
  > nav, > .list, > main { min-height: 0; display: flex; flex-direction: column; }
  > nav { border-right: 1px solid ${theme.border}; padding: 0.75rem; gap: 0.25rem; }
  > .list { border-right: 1px solid ${theme.border}; }
  .menu, .back { display: none; }
  @media (max-width: ${theme.narrow}) {
    grid-template-columns: 1fr;
    > nav { display: ${(p) => (p.$pane === 'folders' ? 'flex' : 'none')}; border: 0; }
    > .list { display: ${(p) => (p.$pane === 'list' ? 'flex' : 'none')}; border: 0; }
    > main { display: ${(p) => (p.$pane === 'main' ? 'flex' : 'none')}; }
    .menu, .back { display: inline-block; }
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
  background: ${theme.text};
  color: #fff;
  box-shadow: 0 4px 16px rgba(0, 0, 0, 0.25);
  max-width: calc(100vw - 2rem);
  button { background: transparent; color: #fff; border-color: #fff; }
`;

// TOAST_MS is how long an Undo stays offered.
const TOAST_MS = 10_000;

// SEARCH_DEBOUNCE_MS is how long after the last key a search goes out.
const SEARCH_DEBOUNCE_MS = 150;

type Toast = { text: string; undo?: () => Promise<void>; key: number };

const Status = styled.span`
  font-size: 0.85rem;
  color: ${theme.muted};
`;

type ComposeState = { init: ComposeInit; draft?: Message; forwardFrom?: string; key: number };

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

  const searching = query.trim() !== '';
  const list = useMemo(() => {
    if (!searching) return folderList(st.messages.values(), folder);
    // The local copies, fresher than the answer: a message moved or
    // deleted meanwhile shows as it is (the next answer drops it).
    return (found?.ids ?? []).map((id) => st.messages.get(id)).filter((m): m is Message => m !== undefined);
  }, [st.messages, folder, searching, found]);
  const unreadIn = useMemo(() => {
    const n = new Map<Folder, number>();
    for (const m of st.messages.values()) if (!m.seen && m.status !== 'sent' && m.status !== 'draft') n.set(m.folder, (n.get(m.folder) ?? 0) + 1);
    return n;
  }, [st.messages]);
  const unread = unreadIn.get('inbox') ?? 0;
  const folders: Folder[] = useMemo(() => [...FOLDERS, ...st.folders.map((f) => f.name)], [st.folders]);
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
      try {
        if (full.text) text = await loadBody(ctl.api, full, full.text);
      } catch {
        /* offline */
      }
      const refs = (full.placeholder?.headers['References'] as string | undefined)?.split(/\s+/);
      setCompose({
        key: Date.now(),
        draft: full,
        init: { to: full.to.join(', '), cc: (full.cc ?? []).join(', '), bcc: (full.bcc ?? []).join(', '), subject: full.subject, text, inReplyTo: full.in_reply_to, references: refs, forwarded: full.attachments },
      });
      setPane('main');
      return;
    }
    setCompose(null);
    setOpened(id);
    setPane('main');
    if (m && !m.seen) void ctl.markSeen(m, true);
  }

  async function reply(m: Message, mode: ReplyMode) {
    const full = (await ctl.full(m.id)) ?? m;
    let body = '';
    try {
      if (full.text) body = await loadBody(ctl.api, full, full.text);
    } catch {
      /* quote nothing */
    }
    setCompose({ key: Date.now(), init: replyInit(full, body, mode, st.me?.address ?? ''), forwardFrom: mode === 'forward' ? m.id : undefined });
    setPane('main');
  }

  useEffect(() => () => clearTimeout(toastTimer.current), []);

  function say(text: string, undo?: () => Promise<void>) {
    clearTimeout(toastTimer.current);
    setToast({ text, undo, key: Date.now() });
    toastTimer.current = setTimeout(() => setToast(null), TOAST_MS);
  }

  function failed(e: unknown) {
    say(e instanceof Error ? e.message : String(e));
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
      failed(e);
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
      failed(e);
    }
  }

  async function restore(m: Message) {
    try {
      const back = await ctl.restore(m);
      leave();
      say(`Restored to ${folderLabel(back.folder)}`);
    } catch (e) {
      failed(e);
    }
  }

  async function newFolder() {
    const name = prompt('Name of the new folder')?.trim();
    if (!name) return;
    try {
      await ctl.createFolder(name);
      say(`Folder “${name}” added`);
    } catch (e) {
      failed(e);
    }
  }

  async function undo(t: Toast) {
    setToast(null);
    try {
      await t.undo?.();
    } catch (e) {
      failed(e);
    }
  }

  // Shortcuts on the open message (not while typing): e archives, # deletes.
  const current = thread.length > 0 && !compose ? thread[thread.length - 1] : undefined;
  useEffect(() => {
    if (!current) return;
    function onKey(e: KeyboardEvent) {
      const t = e.target as HTMLElement | null;
      if (e.ctrlKey || e.metaKey || e.altKey || t?.closest('input, textarea, select, [contenteditable]')) return;
      if (e.key === '/') {
        e.preventDefault();
        searchBox.current?.focus();
      } else if (e.key === '#') {
        e.preventDefault();
        void remove(current!);
      } else if (e.key === 'e' && current!.folder !== 'archive' && current!.folder !== 'trash' && current!.folder !== 'drafts') {
        e.preventDefault();
        void move(current!, 'archive');
      }
    }
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  });

  const statusText = !st.online ? 'Offline: showing what was synced' : st.syncing ? 'Syncing…' : st.live ? 'Up to date (live)' : 'Up to date';

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
        <Status role="status" aria-live="polite" data-testid="sync-status">{statusText}</Status>
        <Muted>{st.me?.address}</Muted>
        <Button type="button" onClick={onSignOut}>Sign out</Button>
      </header>
      <nav aria-label="Folders">
        <Button type="button" $primary onClick={() => { setCompose({ key: Date.now(), init: { to: '', cc: '', bcc: '', subject: '', text: '', forwarded: [] } }); setPane('main'); }}>
          Compose
        </Button>
        {folders.map((f) => {
          const n = f === 'trash' || f === 'junk' ? 0 : (unreadIn.get(f) ?? 0);
          return (
            <FolderButton key={f} type="button" $current={f === folder} aria-current={f === folder ? 'page' : undefined} onClick={() => { setFolder(f); setQuery(''); setOpened(null); setPane('list'); }}>
              <span>{folderLabel(f)}</span>
              {n > 0 && <span aria-label={`${n} unread`}>{n}</span>}
            </FolderButton>
          );
        })}
        <Button type="button" onClick={() => void newFolder()}>New folder</Button>
        {st.error && <p role="alert" style={{ color: theme.danger }}>{st.error}</p>}
      </nav>
      <section className="list" aria-label={`${folderLabel(folder)} messages`}>
        {folder === 'trash' && <Muted style={{ padding: '0.5rem 0.9rem', fontSize: '0.85rem' }}>Messages in Trash are deleted for good after {TRASH_DAYS} days.</Muted>}
        {searching && found?.error && <p role="alert" style={{ padding: '0.5rem 0.9rem', color: theme.danger }}>{found.error}</p>}
        <MessageList folder={folder} label={searching ? `Results for “${query.trim()}”` : undefined}
          empty={searching ? (found ? `Nothing matches “${query.trim()}”.` : 'Searching…') : undefined} messages={list} selected={selected} onSelect={setSelected} onOpen={(id) => void open(id)} />
      </section>
      <main>
        <div className="back" style={{ padding: '0.5rem 1rem 0' }}>
          <Button type="button" onClick={() => setPane('list')}>← Back</Button>
        </div>
        {compose ? (
          <Compose key={compose.key} ctl={ctl} init={compose.init} draft={compose.draft} forwardFrom={compose.forwardFrom} onClose={() => { setCompose(null); if (!opened) setPane('list'); }} />
        ) : thread.length > 0 ? (
          <Conversation
            api={ctl.api}
            thread={thread}
            folders={folders}
            onReply={(m, mode) => void reply(m, mode)}
            onDelete={(m) => void remove(m)}
            onMove={(m, to) => void move(m, to)}
            onRestore={(m) => void restore(m)}
            onUnread={(m) => void ctl.markSeen(m, false)}
          />
        ) : (
          <p style={{ padding: '1rem', color: theme.muted }}>{st.loaded ? 'Select a message to read it.' : 'Loading…'}</p>
        )}
      </main>
      {toast && (
        <ToastBox key={toast.key} role="status" aria-live="polite" data-testid="toast">
          <span>{toast.text}</span>
          {toast.undo && <Button type="button" onClick={() => void undo(toast)}>Undo</Button>}
        </ToastBox>
      )}
    </Shell>
  );
}
