// MailController runs the signed-in app's background work: loading the
// local copy, syncing (polling, or push when the server offers events),
// refreshing the token silently, and telling the UI what changed.
import { Api } from './api';
import { idbSyncStore, kvGet, kvSet, putMessage } from './db';
import { listenEvents, type EventsHandle } from './events';
import { OAuthError, type Session } from './oauth';
import { syncOnce } from './sync';
import type { Me, Message } from './types';

export interface MailState {
  me: Me | null;
  messages: Map<string, Message>;
  loaded: boolean;
  syncing: boolean;
  online: boolean; // the last request reached the server
  live: boolean; // the event stream is connected
  error: string;
  signedOut: boolean;
}

const POLL_MS = 10_000;
const POLL_LIVE_MS = 60_000;

export class MailController {
  readonly api: Api;
  private state: MailState = { me: null, messages: new Map(), loaded: false, syncing: false, online: true, live: false, error: '', signedOut: false };
  private listeners = new Set<() => void>();
  private cursor: string | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private events: EventsHandle | null = null;
  private stopped = false;

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
    this.set({ messages: local.messages, me, loaded: true });
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
    this.events?.stop();
    for (const t of this.timers) clearTimeout(t);
  }

  private refreshLoop(): void {
    if (this.stopped) return;
    this.timers.push(
      setTimeout(async () => {
        try {
          await this.session.refresh();
          this.set({ online: true });
        } catch (e) {
          this.fail(e);
        }
        this.refreshLoop();
      }, this.session.msUntilRefresh()),
    );
  }

  private pollLoop(): void {
    if (this.stopped) return;
    this.timers.push(
      setTimeout(async () => {
        await this.sync();
        this.pollLoop();
      }, this.state.live ? POLL_LIVE_MS : POLL_MS),
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
          this.set({ messages: r.messages, online: true, error: '' });
        } catch (e) {
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
