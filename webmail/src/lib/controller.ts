// MailController runs the signed-in app's background work: loading the
// local copy, syncing (polling, or push when the server offers events),
// refreshing the token silently, and telling the UI what changed.
import { Api } from './api';
import { idbSyncStore, kvGet, kvSet, putMessage } from './db';
import { listenEvents, type EventsHandle } from './events';
import { OAuthError, type Session } from './oauth';
import { syncOnce } from './sync';
import { FOLDERS, type Folder, type FolderInfo, type Me, type Message } from './types';

export interface MailState {
  me: Me | null;
  messages: Map<string, Message>;
  folders: FolderInfo[]; // the user's own folders (GET /api/v1/folders), by name
  loaded: boolean;
  syncing: boolean;
  online: boolean; // the last request reached the server
  live: boolean; // the event stream is connected
  error: string;
  signedOut: boolean;
}

const isSystem = (f: Folder) => (FOLDERS as readonly string[]).includes(f);

const POLL_MS = 10_000;
const POLL_LIVE_MS = 60_000;
// RETRY_MAX_MS caps the wait between attempts while the server cannot be
// reached: a token refresh that fails is not tried again every second.
const RETRY_MAX_MS = 60_000;

// retryDelay is the wait after n failures in a row: 2, 4, 8 … 60 s.
export function retryDelay(n: number): number {
  return Math.min(RETRY_MAX_MS, 1000 * 2 ** Math.max(1, n));
}

export class MailController {
  readonly api: Api;
  private state: MailState = { me: null, messages: new Map(), folders: [], loaded: false, syncing: false, online: true, live: false, error: '', signedOut: false };
  private listeners = new Set<() => void>();
  private cursor: string | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private events: EventsHandle | null = null;
  private stopped = false;
  private refreshFailures = 0;
  private syncFailures = 0;
  private onOnline = () => {
    // Back online: refresh and sync now rather than at the next backoff.
    this.refreshFailures = 0;
    this.syncFailures = 0;
    this.session.resetBackoff();
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.refreshLoop();
    void this.sync().then(() => this.pollLoop());
  };

  constructor(readonly session: Session) {
    this.api = new Api(session);
  }

  get = (): MailState => this.state;
  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };
  private set(p: Partial<MailState>): void {
    this.state = { ...this.state, ...p };
    for (const fn of this.listeners) fn();
  }

  async start(): Promise<void> {
    const local = await idbSyncStore.load();
    this.cursor = local.cursor;
    const me = (await kvGet<Me>('me')) ?? null;
    const folders = (await kvGet<FolderInfo[]>('folders')) ?? [];
    this.set({ messages: local.messages, me, folders, loaded: true });
    if (typeof window !== 'undefined') window.addEventListener('online', this.onOnline);
    this.refreshLoop();
    try {
      const fresh = await this.api.me();
      await kvSet('me', fresh);
      this.set({ me: fresh, online: true });
      if (fresh.features?.includes('events')) {
        this.events = listenEvents(this.api, () => void this.sync(), (live) => this.set({ live }));
      }
    } catch (e) {
      this.fail(e);
    }
    await this.sync();
    this.pollLoop();
  }

  stop(): void {
    this.stopped = true;
    if (typeof window !== 'undefined') window.removeEventListener('online', this.onOnline);
    this.events?.stop();
    for (const t of this.timers) clearTimeout(t);
  }

  // refreshLoop refreshes the access token a minute before it expires;
  // after a failure it waits longer each time (retryDelay), so that an
  // offline tab does not ask for the metadata and a token every second.
  private refreshLoop(delay?: number): void {
    if (this.stopped) return;
    const wait = delay ?? (this.refreshFailures > 0 ? retryDelay(this.refreshFailures) : this.session.msUntilRefresh());
    this.timers.push(
      setTimeout(async () => {
        try {
          await this.session.refresh();
          this.refreshFailures = 0;
          this.set({ online: true });
        } catch (e) {
          this.refreshFailures++;
          this.fail(e);
        }
        this.refreshLoop();
      }, wait),
    );
  }

  private pollLoop(): void {
    if (this.stopped) return;
    const wait = this.syncFailures > 0 ? Math.max(POLL_MS, retryDelay(this.syncFailures)) : this.state.live ? POLL_LIVE_MS : POLL_MS;
    this.timers.push(
      setTimeout(async () => {
        await this.sync();
        this.pollLoop();
      }, wait),
    );
  }

  private fail(e: unknown): void {
    if (e instanceof OAuthError && (e.code === 'invalid_grant' || e.code === 'signed_out')) {
      this.stop();
      this.set({ signedOut: true });
      return;
    }
    if (e instanceof TypeError) {
      this.set({ online: false });
      return;
    }
    this.set({ error: e instanceof Error ? e.message : String(e) });
  }

  // sync runs one sync; a request while one runs makes it run once more.
  sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        this.set({ syncing: true });
        try {
          const r = await syncOnce(this.api, idbSyncStore, { messages: this.state.messages, cursor: this.cursor });
          this.cursor = r.cursor;
          this.syncFailures = 0;
          this.set({ messages: r.messages, online: true, error: '' });
          // Folders are not in the change log (§8.18): ask again when
          // anything changed, or a message is in a folder not known here.
          const known = new Set(this.state.folders.map((f) => f.name));
          const unknown = [...r.messages.values()].some((m) => !known.has(m.folder) && !isSystem(m.folder));
          if (r.changed > 0 || r.resynced || unknown || !this.foldersLoaded) await this.refreshFolders();
        } catch (e) {
          this.syncFailures++;
          this.fail(e);
        }
      } while (this.again && !this.stopped);
      this.set({ syncing: false });
      this.running = null;
    })();
    return this.running;
  }

  // full returns a message with its document, from the local copy when it
  // has it, else from the server (and keeps it).
  async full(id: string): Promise<Message | undefined> {
    const have = this.state.messages.get(id);
    if (have?.placeholder) return have;
    try {
      const m = await this.api.get(id);
      await putMessage(m);
      this.update(m);
      return m;
    } catch (e) {
      this.fail(e);
      return have;
    }
  }

  private foldersLoaded = false;

  async refreshFolders(): Promise<void> {
    const fl = await this.api.folders();
    const folders = fl.folders.filter((f) => !f.system);
    this.foldersLoaded = true;
    await kvSet('folders', folders);
    this.set({ folders });
  }

  async createFolder(name: string): Promise<void> {
    await this.api.createFolder(name);
    await this.refreshFolders();
  }

  async deleteFolder(name: string): Promise<void> {
    await this.api.deleteFolder(name);
    await this.refreshFolders();
  }

  // keep stores a message the server answered, keeping the document we
  // have (a summary carries none).
  private async keep(m: Message): Promise<Message> {
    const cur = this.state.messages.get(m.id);
    const merged = m.placeholder || !cur?.placeholder ? m : { ...m, placeholder: cur.placeholder };
    await putMessage(merged);
    this.update(merged);
    return merged;
  }

  // moveTo moves a message (§8.18): shown at once, then as the server
  // answers; on failure put back and the error thrown.
  async moveTo(m: Message, folder: Folder): Promise<Message> {
    this.update({ ...m, folder });
    try {
      return await this.keep(await this.api.move(m.id, folder));
    } catch (e) {
      this.update(m);
      throw e;
    }
  }

  // trash deletes a message to trash; restore (its undo) puts it back where
  // it was.
  async trash(m: Message): Promise<Message> {
    const moved = { ...m, folder: 'trash' };
    this.update(moved);
    try {
      await this.api.remove(m.id);
    } catch (e) {
      this.update(m);
      throw e;
    }
    await putMessage(moved);
    return moved;
  }

  async restore(m: Message): Promise<Message> {
    return this.keep(await this.api.restore(m.id));
  }

  // purge removes a message in trash for good.
  async purge(m: Message): Promise<void> {
    await this.api.purge(m.id);
    this.forget(m.id);
  }

  update(m: Message): void {
    const messages = new Map(this.state.messages);
    const prev = messages.get(m.id);
    messages.set(m.id, !m.placeholder && prev?.placeholder && prev.updated === m.updated ? { ...m, placeholder: prev.placeholder } : m);
    this.set({ messages });
  }

  forget(id: string): void {
    const messages = new Map(this.state.messages);
    messages.delete(id);
    this.set({ messages });
  }

  async markSeen(m: Message, seen: boolean): Promise<void> {
    if (m.seen === seen) return;
    this.update({ ...m, seen });
    try {
      const s = await this.api.setSeen(m.id, seen);
      const cur = this.state.messages.get(m.id);
      const merged = { ...s, placeholder: cur?.placeholder ?? m.placeholder };
      await putMessage(merged);
      this.update(merged);
    } catch (e) {
      this.fail(e);
    }
  }
}
