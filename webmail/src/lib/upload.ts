// Resumable uploads of attachments of any size: the file goes up in chunks
// (POST /api/v1/uploads, then PATCH with Upload-Offset); after a dropped
// connection the client asks the server how far it got (GET) and goes on
// from there, with exponential backoff.
import { ApiError } from './types';

export const CHUNK_SIZE = 8 << 20; // 8 MiB

export interface Uploaded {
  content_id: string;
  size: number;
}

export interface PatchResult {
  offset: number; // the server's offset after the chunk
  done?: Uploaded; // set by the final chunk (201)
}

// UploadTransport is the HTTP side, replaced by a fake in tests.
export interface UploadTransport {
  create(size: number): Promise<string>; // the upload's id
  patch(id: string, offset: number, chunk: Blob, onSent: (bytes: number) => void): Promise<PatchResult>;
  offset(id: string): Promise<number>;
}

export interface UploadOptions {
  chunkSize?: number;
  maxRetries?: number; // consecutive failures before giving up
  onProgress?: (sent: number, total: number) => void;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
}

// retryable tells a dropped connection or a server hiccup from a refusal.
export function retryable(e: unknown): boolean {
  if (e instanceof ApiError) {
    return e.status === 408 || e.status === 409 || e.status === 429 || e.status >= 500 || e.status === 0;
  }
  return !(e instanceof DOMException && e.name === 'AbortError');
}

export function backoff(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** Math.max(0, attempt - 1));
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function resumableUpload(file: Blob, t: UploadTransport, opt: UploadOptions = {}): Promise<Uploaded> {
  const chunkSize = opt.chunkSize ?? CHUNK_SIZE;
  const maxRetries = opt.maxRetries ?? 8;
  const sleep = opt.sleep ?? realSleep;
  const total = file.size;
  const progress = (n: number) => opt.onProgress?.(Math.min(n, total), total);
  let id = '';
  let offset = 0;
  let failures = 0;
  progress(0);
  for (;;) {
    if (opt.signal?.aborted) throw new DOMException('upload cancelled', 'AbortError');
    try {
      if (!id) id = await t.create(total);
      const chunk = file.slice(offset, Math.min(total, offset + chunkSize));
      const base = offset;
      const r = await t.patch(id, offset, chunk, (n) => progress(base + n));
      if (r.done) {
        progress(total);
        return r.done;
      }
      if (r.offset <= offset && chunk.size > 0) throw new ApiError(500, 'no_progress', 'the server did not advance the offset');
      offset = r.offset;
      failures = 0;
      progress(offset);
    } catch (e) {
      if (!retryable(e)) throw e;
      failures++;
      if (failures > maxRetries) throw e;
      await sleep(backoff(failures));
      if (id) {
        try {
          offset = await t.offset(id);
          progress(offset);
        } catch (e2) {
          if (e2 instanceof ApiError && e2.status === 404) {
            id = ''; // the upload expired: start again
            offset = 0;
          } else if (!retryable(e2)) {
            throw e2;
          }
        }
      }
    }
  }
}
