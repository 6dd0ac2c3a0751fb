// The mailbox API (docs/PROTOCOL.md §8) on the app's own origin, with the
// session's bearer token; a 401 refreshes the token once and retries.
import { contentID } from './b64u';
import type { Session } from './oauth';
import { ApiError, type Changes, type Folder, type FolderInfo, type FolderList, type ListPage, type Me, type Message, type PlaceholderDoc } from './types';
import { PAGE_LIMIT, type SyncSource } from './sync';
import type { PatchResult, UploadTransport, Uploaded } from './upload';

async function apiError(r: Response): Promise<ApiError> {
  const j = (await r.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
  return new ApiError(r.status, j?.error?.code ?? `http_${r.status}`, j?.error?.message ?? `HTTP ${r.status}`);
}

export class Api implements SyncSource {
  constructor(private readonly session: Session) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const token = attempt === 0 ? await this.session.token() : await this.session.refresh();
      const headers = new Headers(init.headers);
      headers.set('Authorization', `Bearer ${token}`);
      const r = await fetch(path, { ...init, headers, cache: 'no-store' });
      if (r.status === 401 && attempt === 0) continue;
      if (!r.ok) throw await apiError(r);
      return r;
    }
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return (await (await this.fetch(path, init)).json()) as T;
  }

  private send<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    return this.json<T>(path, init);
  }

  me = () => this.json<Me>('/api/v1/me');
  list = (folder: Folder, page?: string) => {
    const q = new URLSearchParams({ folder, limit: String(PAGE_LIMIT) });
    if (page) q.set('page', page);
    return this.json<ListPage>(`/api/v1/messages?${q}`);
  };
  changes = (cursor: string) => this.json<Changes>(`/api/v1/changes?${new URLSearchParams({ cursor })}`);
  get = (id: string) => this.json<Message>(`/api/v1/messages/${encodeURIComponent(id)}`);
  createDraft = (doc: PlaceholderDoc) => this.send<Message>('POST', '/api/v1/messages', doc);
  updateDraft = (id: string, doc: PlaceholderDoc) => this.send<Message>('PUT', `/api/v1/messages/${encodeURIComponent(id)}`, doc);
  sendDraft = (id: string) => this.send<Message>('POST', `/api/v1/messages/${encodeURIComponent(id)}/send`);
  setSeen = (id: string, seen: boolean) => this.send<Message>('PATCH', `/api/v1/messages/${encodeURIComponent(id)}`, { seen });
  // remove moves a message to trash (§8.10.6); purge removes one in trash
  // for good.
  async remove(id: string): Promise<void> {
    await this.fetch(`/api/v1/messages/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }
  async purge(id: string): Promise<void> {
    await this.fetch(`/api/v1/messages/${encodeURIComponent(id)}?purge=true`, { method: 'DELETE' });
  }
  restore = (id: string) => this.send<Message>('POST', `/api/v1/messages/${encodeURIComponent(id)}/restore`);
  move = (id: string, folder: Folder) => this.send<Message>('POST', `/api/v1/messages/${encodeURIComponent(id)}/move`, { folder });
  folders = () => this.json<FolderList>('/api/v1/folders');
  // search runs a query of §8.19 (one page, newest first).
  search = (q: string, signal?: AbortSignal) =>
    this.json<ListPage>(`/api/v1/search?${new URLSearchParams({ q, limit: String(PAGE_LIMIT) })}`, { signal });
  createFolder = (name: string) => this.send<FolderInfo>('POST', '/api/v1/folders', { name });
  async deleteFolder(name: string): Promise<void> {
    await this.fetch(`/api/v1/folders/${encodeURIComponent(name)}`, { method: 'DELETE' });
  }

  resourcePath(id: string, cid: string): string {
    return `/api/v1/messages/${encodeURIComponent(id)}/resources/${encodeURIComponent(cid)}`;
  }
  async download(id: string, cid: string): Promise<Blob> {
    return (await this.fetch(this.resourcePath(id, cid))).blob();
  }
  async downloadText(id: string, cid: string): Promise<string> {
    return (await this.fetch(this.resourcePath(id, cid))).text();
  }

  // uploadSmall stores bytes in one request, declaring their Content-ID
  // (§8.5): for bodies typed in the compose form.
  async uploadSmall(data: Uint8Array): Promise<Uploaded> {
    const cid = await contentID(data);
    return this.json<Uploaded>(`/api/v1/resources?content_id=${cid}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: data as Uint8Array<ArrayBuffer>,
    });
  }

  // xhr sends a request with upload progress, which fetch cannot report.
  private async xhr(method: string, url: string, headers: Record<string, string>, body: Blob | string | null, onSent?: (n: number) => void): Promise<XMLHttpRequest> {
    for (let attempt = 0; ; attempt++) {
      const token = attempt === 0 ? await this.session.token() : await this.session.refresh();
      const x = await new Promise<XMLHttpRequest>((resolve, reject) => {
        const x = new XMLHttpRequest();
        x.open(method, url);
        x.setRequestHeader('Authorization', `Bearer ${token}`);
        for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
        if (onSent) x.upload.onprogress = (e) => onSent(e.loaded);
        x.onload = () => resolve(x);
        x.onerror = () => reject(new TypeError('network error'));
        x.ontimeout = () => reject(new TypeError('timeout'));
        x.send(body);
      });
      if (x.status === 401 && attempt === 0) continue;
      if (x.status < 200 || x.status >= 300) {
        let code = `http_${x.status}`;
        let msg = `HTTP ${x.status}`;
        try {
          const j = JSON.parse(x.responseText) as { error?: { code?: string; message?: string } };
          code = j.error?.code ?? code;
          msg = j.error?.message ?? msg;
        } catch {
          /* not JSON */
        }
        throw new ApiError(x.status, code, msg);
      }
      return x;
    }
  }

  // uploads is the resumable upload API as the upload loop needs it.
  uploads: UploadTransport = {
    create: async (size) => {
      const x = await this.xhr('POST', '/api/v1/uploads', { 'Content-Type': 'application/json' }, JSON.stringify({ size }));
      const j = JSON.parse(x.responseText) as { upload_id?: string };
      if (!j.upload_id) throw new ApiError(500, 'bad_answer', 'the server named no upload id');
      return j.upload_id;
    },
    patch: async (id, offset, chunk, onSent): Promise<PatchResult> => {
      const x = await this.xhr(
        'PATCH',
        `/api/v1/uploads/${encodeURIComponent(id)}`,
        { 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
        chunk,
        onSent,
      );
      if (x.status === 201) {
        const j = JSON.parse(x.responseText) as Uploaded;
        return { offset: j.size, done: j };
      }
      return { offset: readOffset(x.getResponseHeader('Upload-Offset'), x.responseText) };
    },
    offset: async (id) => {
      const x = await this.xhr('GET', `/api/v1/uploads/${encodeURIComponent(id)}`, {}, null);
      return readOffset(x.getResponseHeader('Upload-Offset'), x.responseText);
    },
  };

  // uploadWhole is the fallback for servers without /api/v1/uploads.
  async uploadWhole(file: Blob, onSent: (n: number) => void): Promise<Uploaded> {
    const x = await this.xhr('POST', '/api/v1/resources', { 'Content-Type': 'application/octet-stream' }, file, onSent);
    return JSON.parse(x.responseText) as Uploaded;
  }
}

function readOffset(header: string | null, body: string): number {
  if (header && /^\d+$/.test(header)) return Number(header);
  try {
    const j = JSON.parse(body) as { offset?: number };
    if (typeof j.offset === 'number') return j.offset;
  } catch {
    /* no body */
  }
  throw new ApiError(500, 'bad_answer', 'the server did not say the upload offset');
}
