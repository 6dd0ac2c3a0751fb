// A conversation: the messages of one X-Thread-ID, oldest first, the newest
// open. Bodies come from the message's text/html leaves, kept in IndexedDB
// once read; HTML is sanitised and shown in a sandboxed frame.
import { useEffect, useMemo, useRef, useState } from 'react';
import styled from 'styled-components';
import type { Api } from '../lib/api';
import { getBody, putBody } from '../lib/db';
import { FRAME_SANDBOX, frameDocument, sanitizeHTML } from '../lib/sanitize';
import { ApiError, folderLabel, type Attachment, type Folder, type Message } from '../lib/types';
import { Button, Muted, formatSize, saveBlob } from './common';
import { theme } from './theme';

const Wrap = styled.section`
  overflow-y: auto;
  flex: 1;
  padding: 1rem;
  h2 { margin: 0 0 1rem; font-size: 1.3rem; }
`;

const Card = styled.article`
  border: 1px solid ${theme.border};
  border-radius: 8px;
  margin-bottom: 1rem;
  header { padding: 0.7rem 1rem; border-bottom: 1px solid ${theme.border}; background: ${theme.panel}; border-radius: 8px 8px 0 0; }
  header p { margin: 0; }
  .body { padding: 1rem; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; font: inherit; margin: 0; }
  iframe { width: 100%; border: 0; min-height: 4rem; }
  .actions { display: flex; flex-wrap: wrap; gap: 0.5rem; padding: 0 1rem 1rem; }
`;

const Attachments = styled.ul`
  list-style: none;
  margin: 0;
  padding: 0 1rem 1rem;
  display: flex;
  flex-wrap: wrap;
  gap: 0.75rem;
  li { border: 1px solid ${theme.border}; border-radius: 6px; padding: 0.5rem; max-width: 16rem; }
  img { display: block; max-width: 100%; max-height: 10rem; margin-bottom: 0.4rem; }
  .name { font-weight: 600; overflow-wrap: anywhere; }
`;

export async function loadBody(api: Api, m: Message, a: Attachment): Promise<string> {
  const cached = await getBody(m.id, a.content_id);
  if (cached !== undefined) return cached;
  const text = await api.downloadText(m.id, a.content_id);
  await putBody(m.id, a.content_id, text);
  return text;
}

function Body({ api, m }: { api: Api; m: Message }) {
  const [state, setState] = useState<{ html?: string; text?: string; error?: string }>({});
  const frame = useRef<HTMLIFrameElement>(null);
  useEffect(() => {
    let live = true;
    (async () => {
      try {
        if (m.html) {
          const html = await loadBody(api, m, m.html);
          if (live) setState({ html: frameDocument(sanitizeHTML(html)) });
        } else if (m.text) {
          const text = await loadBody(api, m, m.text);
          if (live) setState({ text });
        } else if (live) setState({ text: '' });
      } catch (e) {
        const msg = e instanceof ApiError && e.code === 'not_ready' ? 'This message is still being fetched from the sender’s server.' : 'The body could not be loaded (offline?).';
        if (live) setState({ error: msg });
      }
    })();
    return () => {
      live = false;
    };
  }, [api, m]);
  if (state.error) return <p role="status">{state.error}</p>;
  if (state.html !== undefined) {
    return (
      <iframe
        ref={frame}
        title={`Message from ${m.from}`}
        sandbox={FRAME_SANDBOX}
        srcDoc={state.html}
        onLoad={() => {
          const d = frame.current?.contentDocument;
          if (d && frame.current) frame.current.style.height = `${d.documentElement.scrollHeight + 8}px`;
        }}
      />
    );
  }
  if (state.text !== undefined) return <pre data-testid="message-text">{state.text}</pre>;
  return <Muted>Loading…</Muted>;
}

function AttachmentItem({ api, m, a }: { api: Api; m: Message; a: Attachment }) {
  const [preview, setPreview] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const image = /^image\/(png|jpeg|gif|webp|bmp)/i.test(a.content_type) && a.size <= 10 << 20 && m.status !== 'fetching';
  useEffect(() => {
    if (!image) return;
    let url = '';
    let live = true;
    api.download(m.id, a.content_id).then(
      (b) => {
        url = URL.createObjectURL(b);
        if (live) setPreview(url);
      },
      () => {},
    );
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [api, m.id, a.content_id, image]);
  const name = a.filename || a.content_id;
  async function download() {
    setBusy(true);
    setError('');
    try {
      saveBlob(await api.download(m.id, a.content_id), name);
    } catch (e) {
      setError(e instanceof Error ? e.message : 'download failed');
    } finally {
      setBusy(false);
    }
  }
  return (
    <li>
      {preview && <img src={preview} alt={`Preview of ${name}`} />}
      <div className="name">{name}</div>
      <Muted>
        {a.content_type.split(';')[0]} · {formatSize(a.size)}
      </Muted>
      <div>
        <Button type="button" onClick={download} disabled={busy} aria-label={`Download ${name}`}>
          {busy ? 'Downloading…' : 'Download'}
        </Button>
      </div>
      {error && <p role="alert">{error}</p>}
    </li>
  );
}

export type ReplyMode = 'reply' | 'replyAll' | 'forward';

interface Props {
  api: Api;
  thread: Message[];
  folders: readonly Folder[]; // every folder, to offer as a move target
  onReply: (m: Message, mode: ReplyMode) => void;
  onDelete: (m: Message) => void; // to trash; from trash, for good
  onMove: (m: Message, to: Folder) => void;
  onRestore: (m: Message) => void;
  onUnread: (m: Message) => void;
}

// movable is where a message may move by hand (§8.18): not into drafts or
// sent, nor trash (that is Delete), nor where it is.
function movable(folders: readonly Folder[], m: Message): Folder[] {
  if (m.folder === 'drafts' || m.folder === 'trash') return [];
  return folders.filter((f) => f !== m.folder && f !== 'drafts' && f !== 'sent' && f !== 'trash');
}

export function Conversation({ api, thread, folders, onReply, onDelete, onMove, onRestore, onUnread }: Props) {
  const last = thread[thread.length - 1]!;
  const [open, setOpen] = useState<Set<string>>(() => new Set([last.id]));
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => setOpen((o) => new Set([...o, last.id])), [last.id]);
  const subject = useMemo(() => last.subject || '(no subject)', [last]);
  return (
    <Wrap aria-label="Conversation" data-testid="conversation">
      <h2 ref={heading} tabIndex={-1}>{subject}</h2>
      {thread.map((m) => (
        <Card key={m.id} aria-label={`Message from ${m.from}`}>
          <header>
            <p>
              <button
                type="button"
                onClick={() => setOpen((o) => { const n = new Set(o); if (n.has(m.id)) n.delete(m.id); else n.add(m.id); return n; })}
                aria-expanded={open.has(m.id)}
                style={{ all: 'unset', cursor: 'pointer', fontWeight: 600 }}
              >
                {m.from}
              </button>
            </p>
            <p><Muted>To: {m.to.join(', ') || '—'}{m.cc?.length ? ` · Cc: ${m.cc.join(', ')}` : ''}{m.bcc?.length ? ` · Bcc: ${m.bcc.join(', ')}` : ''}</Muted></p>
            <p><Muted>{m.date ? new Date(m.date).toLocaleString() : 'draft'}{m.status === 'fetching' ? ' · fetching…' : m.status === 'failed' ? ` · failed: ${m.status_reason ?? ''}` : ''}</Muted></p>
          </header>
          {open.has(m.id) && (
            <>
              <div className="body"><Body api={api} m={m} /></div>
              {m.attachments.length > 0 && (
                <Attachments aria-label="Attachments">
                  {m.attachments.map((a, i) => <AttachmentItem key={`${a.content_id}-${i}`} api={api} m={m} a={a} />)}
                </Attachments>
              )}
              <div className="actions">
                <Button type="button" onClick={() => onReply(m, 'reply')}>Reply</Button>
                <Button type="button" onClick={() => onReply(m, 'replyAll')}>Reply all</Button>
                <Button type="button" onClick={() => onReply(m, 'forward')}>Forward</Button>
                {m.folder === 'inbox' && <Button type="button" onClick={() => onUnread(m)}>Mark unread</Button>}
                {m.folder === 'trash' ? (
                  <Button type="button" onClick={() => onRestore(m)}>Restore</Button>
                ) : (
                  m.folder !== 'archive' && m.folder !== 'drafts' && <Button type="button" onClick={() => onMove(m, 'archive')} aria-keyshortcuts="e">Archive</Button>
                )}
                {movable(folders, m).length > 0 && (
                  <select
                    aria-label="Move to folder"
                    value=""
                    onChange={(e) => e.target.value && onMove(m, e.target.value)}
                  >
                    <option value="">Move to…</option>
                    {movable(folders, m).map((f) => <option key={f} value={f}>{folderLabel(f)}</option>)}
                  </select>
                )}
                <Button type="button" onClick={() => onDelete(m)} aria-keyshortcuts={m.folder === 'trash' ? undefined : '#'}>
                  {m.folder === 'trash' ? 'Delete forever' : 'Delete'}
                </Button>
              </div>
            </>
          )}
        </Card>
      ))}
    </Wrap>
  );
}
