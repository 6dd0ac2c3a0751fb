import { describe, expect, it } from 'vitest';
import { backoff, resumableUpload, type UploadTransport } from './upload';
import { ApiError } from './types';

// fakeServer keeps an upload's bytes and can drop a PATCH half-way.
function fakeServer(dropAt: number[] = []) {
  let stored = new Uint8Array(0);
  let size = -1;
  const calls: string[] = [];
  const t: UploadTransport = {
    async create(n) {
      size = n;
      calls.push(`create ${n}`);
      return 'u1';
    },
    async patch(_id, offset, chunk, onSent) {
      calls.push(`patch ${offset}+${chunk.size}`);
      if (offset !== stored.length) throw new ApiError(409, 'offset_mismatch', 'wrong offset');
      let bytes = new Uint8Array(await chunk.arrayBuffer());
      const drop = dropAt.shift();
      if (drop !== undefined) bytes = bytes.slice(0, drop); // the connection dies after `drop` bytes
      const next = new Uint8Array(stored.length + bytes.length);
      next.set(stored);
      next.set(bytes, stored.length);
      stored = next;
      onSent(bytes.length);
      if (drop !== undefined) throw new TypeError('network error');
      if (stored.length === size) return { offset: size, done: { content_id: 'cid', size } };
      return { offset: stored.length };
    },
    async offset() {
      calls.push(`offset ${stored.length}`);
      return stored.length;
    },
  };
  return { t, calls, bytes: () => stored };
}

function blobOf(n: number): { blob: Blob; data: Uint8Array } {
  const data = new Uint8Array(n).map((_, i) => (i * 7) & 255);
  return { blob: new Blob([data]), data };
}

describe('resumableUpload', () => {
  it('sends chunks in order', async () => {
    const s = fakeServer();
    const { blob, data } = blobOf(25);
    const seen: number[] = [];
    const r = await resumableUpload(blob, s.t, { chunkSize: 10, onProgress: (n) => seen.push(n) });
    expect(r).toEqual({ content_id: 'cid', size: 25 });
    expect(s.calls).toEqual(['create 25', 'patch 0+10', 'patch 10+10', 'patch 20+5']);
    expect(s.bytes()).toEqual(data);
    expect(seen[seen.length - 1]).toBe(25);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });
  it('resumes from the server offset after a dropped connection', async () => {
    const s = fakeServer([4]); // the first PATCH drops after 4 bytes
    const { blob, data } = blobOf(25);
    const sleeps: number[] = [];
    const r = await resumableUpload(blob, s.t, { chunkSize: 10, sleep: async (ms) => void sleeps.push(ms) });
    expect(r.size).toBe(25);
    expect(s.bytes()).toEqual(data);
    expect(s.calls).toEqual(['create 25', 'patch 0+10', 'offset 4', 'patch 4+10', 'patch 14+10', 'patch 24+1']);
    expect(sleeps).toEqual([500]);
  });
  it('finishes an empty file with one PATCH', async () => {
    const s = fakeServer();
    const r = await resumableUpload(new Blob([]), s.t, { chunkSize: 10 });
    expect(r.size).toBe(0);
    expect(s.calls).toEqual(['create 0', 'patch 0+0']);
  });
  it('gives up on a refusal at once', async () => {
    const t: UploadTransport = {
      create: async () => {
        throw new ApiError(413, 'too_large', 'too large');
      },
      patch: async () => ({ offset: 0 }),
      offset: async () => 0,
    };
    await expect(resumableUpload(blobOf(3).blob, t)).rejects.toThrow('too large');
  });
  it('gives up after too many failures', async () => {
    let n = 0;
    const t: UploadTransport = {
      create: async () => {
        n++;
        throw new TypeError('offline');
      },
      patch: async () => ({ offset: 0 }),
      offset: async () => 0,
    };
    await expect(resumableUpload(blobOf(3).blob, t, { maxRetries: 3, sleep: async () => {} })).rejects.toThrow('offline');
    expect(n).toBe(4);
  });
  it('backs off exponentially up to 30 s', () => {
    expect([1, 2, 3, 10].map(backoff)).toEqual([500, 1000, 2000, 30000]);
  });
});
