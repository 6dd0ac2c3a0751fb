// The local copy in IndexedDB: message summaries (and documents), bodies,
// and a few values (the sync cursor, the user, the refresh token). Sign-out
// deletes the whole database.
import type { SyncStore } from './sync';
import type { Message } from './types';

const DB_NAME = 'pullmail';
const STORES = ['messages', 'bodies', 'kv'] as const;
type StoreName = (typeof STORES)[number];

let opening: Promise<IDBDatabase> | null = null;

function open(): Promise<IDBDatabase> {
  opening ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      db.createObjectStore('messages', { keyPath: 'id' });
      db.createObjectStore('bodies');
      db.createObjectStore('kv');
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => {
      opening = null;
      reject(req.error);
    };
  });
  return opening;
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

function result<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function get<T>(store: StoreName, key: string): Promise<T | undefined> {
  const db = await open();
  return result(db.transaction(store).objectStore(store).get(key)) as Promise<T | undefined>;
}

async function put(store: StoreName, key: string, value: unknown): Promise<void> {
  const db = await open();
  const tx = db.transaction(store, 'readwrite');
  tx.objectStore(store).put(value, key);
  return done(tx);
}

export const kvGet = <T>(key: string) => get<T>('kv', key);
export const kvSet = (key: string, value: unknown) => put('kv', key, value);
export async function kvDelete(key: string): Promise<void> {
  const db = await open();
  const tx = db.transaction('kv', 'readwrite');
  tx.objectStore('kv').delete(key);
  return done(tx);
}

export const getBody = (messageId: string, cid: string) => get<string>('bodies', `${messageId}/${cid}`);
export const putBody = (messageId: string, cid: string, text: string) => put('bodies', `${messageId}/${cid}`, text);

export async function putMessage(m: Message): Promise<void> {
  const db = await open();
  const tx = db.transaction('messages', 'readwrite');
  tx.objectStore('messages').put(m);
  return done(tx);
}

// idbSyncStore keeps the synced messages and the cursor in one transaction,
// so a crash never leaves a cursor ahead of the messages it covers.
export const idbSyncStore: SyncStore = {
  async load() {
    const db = await open();
    const tx = db.transaction(['messages', 'kv']);
    const all = (await result(tx.objectStore('messages').getAll())) as Message[];
    const cursor = ((await result(tx.objectStore('kv').get('cursor'))) as string | undefined) ?? null;
    return { messages: new Map(all.map((m) => [m.id, m])), cursor };
  },
  async save(_messages, cursor, changed) {
    const db = await open();
    const tx = db.transaction(['messages', 'kv'], 'readwrite');
    const ms = tx.objectStore('messages');
    for (const id of changed.deleted) ms.delete(id);
    for (const m of changed.put) ms.put(m);
    tx.objectStore('kv').put(cursor, 'cursor');
    return done(tx);
  },
};

// clearAll deletes every local copy (sign-out).
export async function clearAll(): Promise<void> {
  const db = await open();
  const tx = db.transaction([...STORES], 'readwrite');
  for (const s of STORES) tx.objectStore(s).clear();
  await done(tx);
}

// Image previews, kept so that they show offline too (resources never
// change, so a copy never goes stale).
export const getBlob = (messageId: string, cid: string) => get<Blob>('bodies', `blob:${messageId}/${cid}`);
export const putBlob = (messageId: string, cid: string, b: Blob) => put('bodies', `blob:${messageId}/${cid}`, b);
