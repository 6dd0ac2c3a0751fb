// Keeping a local copy of the mailbox (docs/PROTOCOL.md §8.11): list each
// folder (following next_page), keep the first listing's cursor, then apply
// the change log in order; a 410 resync_required starts again.
import { ApiError, FOLDERS, type Change, type Changes, type Folder, type FolderList, type ListPage, type Message } from './types';

// applyChanges applies changes in order to messages (by id) and returns the
// new map; the input is not modified.
export function applyChanges(messages: ReadonlyMap<string, Message>, changes: readonly Change[]): Map<string, Message> {
  const out = new Map(messages);
  for (const c of changes) {
    switch (c.kind) {
      case 'created':
      case 'updated':
        if (c.message) {
          const prev = out.get(c.id);
          // A summary carries no placeholder: keep one we already have.
          out.set(c.id, prev?.placeholder && prev.updated === c.message.updated ? { ...c.message, placeholder: prev.placeholder } : c.message);
        }
        break;
      case 'deleted': {
        const prev = out.get(c.id);
        if (prev && prev.folder === c.folder) out.delete(c.id);
        break;
      }
    }
  }
  return out;
}

// SyncSource is the part of the API the syncer reads. folders, when there,
// names the user's own folders, listed after the system ones.
export interface SyncSource {
  list(folder: Folder, page?: string): Promise<ListPage>;
  changes(cursor: string): Promise<Changes>;
  folders?(): Promise<FolderList>;
}

// SyncStore keeps the synced state (IndexedDB in the app, a map in tests).
export interface SyncStore {
  load(): Promise<{ messages: Map<string, Message>; cursor: string | null }>;
  save(messages: Map<string, Message>, cursor: string, changed: { put: Message[]; deleted: string[] }): Promise<void>;
}

export interface SyncResult {
  messages: Map<string, Message>;
  cursor: string;
  resynced: boolean;
  changed: number;
}

export const PAGE_LIMIT = 200;

export async function fullSync(src: SyncSource, store: SyncStore, before: Map<string, Message>): Promise<SyncResult> {
  const messages = new Map<string, Message>();
  let cursor = '';
  const own = src.folders ? (await src.folders()).folders.filter((f) => !f.system).map((f) => f.name) : [];
  for (const folder of [...FOLDERS, ...own]) {
    let page: string | undefined;
    do {
      const l = await src.list(folder, page);
      if (!cursor) cursor = l.cursor; // the first listing's: the oldest, so the safe one
      for (const m of l.messages) {
        const prev = before.get(m.id);
        messages.set(m.id, prev?.placeholder && prev.updated === m.updated ? { ...m, placeholder: prev.placeholder } : m);
      }
      page = l.next_page || undefined;
    } while (page);
  }
  const deleted = [...before.keys()].filter((id) => !messages.has(id));
  await store.save(messages, cursor, { put: [...messages.values()], deleted });
  return { messages, cursor, resynced: true, changed: messages.size + deleted.length };
}

// syncOnce brings the local copy up to date: a full listing when there is no
// cursor or the server says resync_required, else the change log until
// `more` is false.
export async function syncOnce(src: SyncSource, store: SyncStore, state: { messages: Map<string, Message>; cursor: string | null }): Promise<SyncResult> {
  if (!state.cursor) return fullSync(src, store, state.messages);
  let messages = state.messages;
  let cursor = state.cursor;
  let changed = 0;
  for (;;) {
    let ch: Changes;
    try {
      ch = await src.changes(cursor);
    } catch (e) {
      if (e instanceof ApiError && e.status === 410) return fullSync(src, store, messages);
      throw e;
    }
    if (ch.changes.length > 0) {
      const next = applyChanges(messages, ch.changes);
      const put: Message[] = [];
      const deleted: string[] = [];
      for (const c of ch.changes) {
        const m = next.get(c.id);
        if (m) put.push(m);
        else deleted.push(c.id);
      }
      messages = next;
      changed += ch.changes.length;
      await store.save(messages, ch.cursor, { put, deleted });
    } else if (ch.cursor !== cursor) {
      await store.save(messages, ch.cursor, { put: [], deleted: [] });
    }
    cursor = ch.cursor;
    if (!ch.more) return { messages, cursor, resynced: false, changed };
  }
}

// Thread is the messages of one X-Thread-ID (or one message without one),
// oldest first: no drafts, and what is in trash only beside a message in
// trash (a deleted message leaves the conversation; trash shows its own).
export function threadOf(all: Iterable<Message>, m: Message): Message[] {
  if (!m.thread_id) return [m];
  const trashed = m.folder === 'trash';
  const out = [...all].filter((x) => x.thread_id === m.thread_id && x.folder !== 'drafts' && (x.folder === 'trash') === trashed);
  out.sort((a, b) => (a.date ?? a.created).localeCompare(b.date ?? b.created));
  return out.length ? out : [m];
}

// folderList is a folder's messages, newest first.
export function folderList(all: Iterable<Message>, folder: Folder): Message[] {
  const out = [...all].filter((m) => m.folder === folder);
  out.sort((a, b) => (b.date ?? b.updated).localeCompare(a.date ?? a.updated) || b.created.localeCompare(a.created));
  return out;
}
