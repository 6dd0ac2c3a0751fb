// The signed-in screen: folders | list | conversation on a desktop, one
// pane at a time on a phone.
import { useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import styled from 'styled-components';
import { replyInit, type ComposeInit } from '../lib/compose';
import type { MailController } from '../lib/controller';
import { folderList, threadOf } from '../lib/sync';
import { FOLDERS, type Folder, type Message } from '../lib/types';
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
  > header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
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
  text-transform: capitalize;
`;

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

  const list = useMemo(() => folderList(st.messages.values(), folder), [st.messages, folder]);
  const unread = useMemo(() => [...st.messages.values()].filter((m) => m.folder === 'inbox' && !m.seen).length, [st.messages]);
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

  async function remove(m: Message) {
    try {
      await ctl.api.remove(m.id);
      ctl.forget(m.id);
      setOpened(null);
      setPane('list');
    } catch (e) {
      alert(e instanceof Error ? e.message : String(e));
    }
  }

  const statusText = !st.online ? 'Offline: showing what was synced' : st.syncing ? 'Syncing…' : st.live ? 'Up to date (live)' : 'Up to date';

  return (
    <Shell $pane={pane}>
      <header>
        <Button type="button" className="menu" aria-label="Folders" onClick={() => setPane('folders')}>☰</Button>
        <h1>Pullmail</h1>
        <Status role="status" aria-live="polite" data-testid="sync-status">{statusText}</Status>
        <Muted>{st.me?.address}</Muted>
        <Button type="button" onClick={onSignOut}>Sign out</Button>
      </header>
      <nav aria-label="Folders">
        <Button type="button" $primary onClick={() => { setCompose({ key: Date.now(), init: { to: '', cc: '', bcc: '', subject: '', text: '', forwarded: [] } }); setPane('main'); }}>
          Compose
        </Button>
        {FOLDERS.map((f) => (
          <FolderButton key={f} type="button" $current={f === folder} aria-current={f === folder ? 'page' : undefined} onClick={() => { setFolder(f); setPane('list'); }}>
            <span>{f}</span>
            {f === 'inbox' && unread > 0 && <span aria-label={`${unread} unread`}>{unread}</span>}
          </FolderButton>
        ))}
        {st.error && <p role="alert" style={{ color: theme.danger }}>{st.error}</p>}
      </nav>
      <section className="list" aria-label={`${folder} messages`}>
        <MessageList folder={folder} messages={list} selected={selected} onSelect={setSelected} onOpen={(id) => void open(id)} />
      </section>
      <main>
        <div className="back" style={{ padding: '0.5rem 1rem 0' }}>
          <Button type="button" onClick={() => setPane('list')}>← Back</Button>
        </div>
        {compose ? (
          <Compose key={compose.key} ctl={ctl} init={compose.init} draft={compose.draft} forwardFrom={compose.forwardFrom} onClose={() => { setCompose(null); if (!opened) setPane('list'); }} />
        ) : thread.length > 0 ? (
          <Conversation api={ctl.api} thread={thread} onReply={(m, mode) => void reply(m, mode)} onDelete={(m) => void remove(m)} onUnread={(m) => void ctl.markSeen(m, false)} />
        ) : (
          <p style={{ padding: '1rem', color: theme.muted }}>{st.loaded ? 'Select a message to read it.' : 'Loading…'}</p>
        )}
      </main>
    </Shell>
  );
}
