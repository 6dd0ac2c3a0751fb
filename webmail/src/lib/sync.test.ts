import { describe, expect, it } from 'vitest';
import { applyChanges, folderList, syncOnce, threadOf, type SyncSource, type SyncStore } from './sync';
import { ApiError, type Change, type Changes, type Folder, type ListPage, type Message } from './types';

function msg(id: string, folder: Folder, extra: Partial<Message> = {}): Message {
  return {
    id, message_id: `<${id}@a.test>`, folder, status: 'complete', seen: false, from: 'a@a.test', to: [], subject: id,
    date: '2025-01-01T00:00:00Z', created: '2025-01-01T00:00:00Z', updated: '2025-01-01T00:00:00Z', size: 0, attachments: [], ...extra,
  };
}

describe('applyChanges', () => {
  it('inserts, replaces and removes by id', () => {
    const start = new Map([['m1', msg('m1', 'inbox')], ['d1', msg('d1', 'drafts')]]);
    const changes: Change[] = [
      { cursor: '2', id: 'm1', folder: 'inbox', kind: 'updated', message: msg('m1', 'inbox', { seen: true }) },
      { cursor: '3', id: 'd1', folder: 'drafts', kind: 'deleted' },
      { cursor: '4', id: 'd1', folder: 'sent', kind: 'created', message: msg('d1', 'sent') },
      { cursor: '5', id: 'm2', folder: 'inbox', kind: 'created' }, // gone since: no message
      { cursor: '6', id: 'm3', folder: 'inbox', kind: 'created', message: msg('m3', 'inbox') },
      { cursor: '7', id: 'm3', folder: 'inbox', kind: 'deleted' },
    ];
    const out = applyChanges(start, changes);
    expect([...out.keys()].sort()).toEqual(['d1', 'm1']);
    expect(out.get('m1')!.seen).toBe(true);
    expect(out.get('d1')!.folder).toBe('sent');
    expect(start.get('m1')!.seen).toBe(false);
  });
  it('a late deleted of the old folder does not remove a moved message', () => {
    const out = applyChanges(new Map([['d1', msg('d1', 'sent')]]), [{ cursor: '9', id: 'd1', folder: 'drafts', kind: 'deleted' }]);
    expect(out.has('d1')).toBe(true);
  });
});

class MemStore implements SyncStore {
  messages = new Map<string, Message>();
  cursor: string | null = null;
  saves = 0;
  async load() {
    return { messages: new Map(this.messages), cursor: this.cursor };
  }
  async save(m: Map<string, Message>, c: string) {
    this.messages = new Map(m);
    this.cursor = c;
    this.saves++;
  }
}

function source(pages: Record<string, ListPage>, changes: (cursor: string) => Changes): SyncSource & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async list(folder, page) {
      const k = `${folder}${page ? '@' + page : ''}`;
      calls.push(`list ${k}`);
      return pages[k] ?? { messages: [], cursor: '100' };
    },
    async changes(cursor) {
      calls.push(`changes ${cursor}`);
      return changes(cursor);
    },
  };
}

describe('syncOnce', () => {
  it('lists every folder with paging and keeps the first cursor', async () => {
    const src = source(
      {
        inbox: { messages: [msg('a', 'inbox')], cursor: '10', next_page: 'p2' },
        'inbox@p2': { messages: [msg('b', 'inbox')], cursor: '11' },
        sent: { messages: [msg('c', 'sent')], cursor: '12' },
      },
      () => ({ changes: [], cursor: '12', more: false }),
    );
    const st = new MemStore();
    const r = await syncOnce(src, st, await st.load());
    expect(r.resynced).toBe(true);
    expect(r.cursor).toBe('10');
    expect([...st.messages.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect(src.calls).toEqual(['list inbox', 'list inbox@p2', 'list drafts', 'list sent', 'list archive', 'list requests', 'list junk', 'list trash']);
  });
  it('lists the user’s own folders after the system ones', async () => {
    const src = source({ 'Re: trips': { messages: [msg('t', 'Re: trips')], cursor: '20' } }, () => ({ changes: [], cursor: '20', more: false }));
    const withFolders: SyncSource = {
      ...src,
      async folders() {
        return { folders: [{ name: 'inbox', total: 0, unseen: 0, system: true }, { name: 'Re: trips', total: 1, unseen: 1, system: false }] };
      },
    };
    const st = new MemStore();
    await syncOnce(withFolders, st, await st.load());
    expect(src.calls.at(-1)).toBe('list Re: trips');
    expect(st.messages.get('t')!.folder).toBe('Re: trips');
  });
  it('follows more and saves each page of changes', async () => {
    const st = new MemStore();
    st.cursor = '1';
    const src = source({}, (c) =>
      c === '1'
        ? { changes: [{ cursor: '2', id: 'x', folder: 'inbox', kind: 'created', message: msg('x', 'inbox') }], cursor: '2', more: true }
        : { changes: [{ cursor: '3', id: 'y', folder: 'inbox', kind: 'created', message: msg('y', 'inbox') }], cursor: '3', more: false },
    );
    const r = await syncOnce(src, st, await st.load());
    expect(r.cursor).toBe('3');
    expect(r.changed).toBe(2);
    expect(st.cursor).toBe('3');
    expect(st.saves).toBe(2);
    expect(src.calls).toEqual(['changes 1', 'changes 2']);
  });
  it('starts again on 410 resync_required', async () => {
    const st = new MemStore();
    st.cursor = '1';
    st.messages.set('stale', msg('stale', 'inbox'));
    const src = source({ inbox: { messages: [msg('fresh', 'inbox')], cursor: '50' } }, () => {
      throw new ApiError(410, 'resync_required', 'the cursor is too old');
    });
    const r = await syncOnce(src, st, await st.load());
    expect(r.resynced).toBe(true);
    expect([...st.messages.keys()]).toEqual(['fresh']);
    expect(st.cursor).toBe('50');
  });
  it('passes other errors on', async () => {
    const st = new MemStore();
    st.cursor = '1';
    const src = source({}, () => {
      throw new ApiError(503, 'cancelled', 'busy');
    });
    await expect(syncOnce(src, st, await st.load())).rejects.toThrow('busy');
  });
});

describe('views', () => {
  it('groups a thread oldest first, without drafts', () => {
    const all = [
      msg('1', 'inbox', { thread_id: '<t@x>', date: '2025-01-02T00:00:00Z' }),
      msg('2', 'sent', { thread_id: '<t@x>', date: '2025-01-01T00:00:00Z' }),
      msg('3', 'inbox', { thread_id: '<u@x>' }),
      msg('4', 'drafts', { thread_id: '<t@x>' }),
    ];
    expect(threadOf(all, all[0]!).map((m) => m.id)).toEqual(['2', '1']);
    expect(folderList(all, 'inbox').map((m) => m.id)).toEqual(['1', '3']);
  });
  it('keeps trash apart from the conversation', () => {
    const all = [
      msg('1', 'inbox', { thread_id: '<t@x>', date: '2025-01-02T00:00:00Z' }),
      msg('2', 'trash', { thread_id: '<t@x>', date: '2025-01-01T00:00:00Z' }),
      msg('3', 'archive', { thread_id: '<t@x>', date: '2025-01-03T00:00:00Z' }),
    ];
    expect(threadOf(all, all[0]!).map((m) => m.id)).toEqual(['1', '3']);
    expect(threadOf(all, all[1]!).map((m) => m.id)).toEqual(['2']);
  });
});
