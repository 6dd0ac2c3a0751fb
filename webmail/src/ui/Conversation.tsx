// A conversation: the messages of one X-Thread-ID, oldest first, the newest
// open. Bodies come from the message's text/html leaves, kept in IndexedDB
// once read; HTML is sanitised and shown in a sandboxed frame.
import { useEffect, useMemo, useRef, useState } from 'react';
import styled from 'styled-components';
import type { Api } from '../lib/api';
import { getBlob, getBody, putBlob, putBody } from '../lib/db';
import { formatDate, fullDate, humanError, isNotice, parseNotice, scrub, type Bounce } from '../lib/human';
import { inlineParts } from '../lib/placeholder';
import { FRAME_SANDBOX, cidsOf, frameDocument, sanitizeBody } from '../lib/sanitize';
import { ApiError, folderLabel, type Attachment, type Folder, type Message } from '../lib/types';
import { Button, Muted, formatSize, saveBlob } from './common';
import { theme } from './theme';

// SenderButton opens and closes a message of the conversation; it looks
// like the name it is, with the focus ring every control has (WCAG 2.4.7).
const SenderButton = styled.button`
  border: 0;
  background: none;
  padding: 0;
  margin: 0;
  font: inherit;
  font-weight: 600;
  color: ${theme.text};
  cursor: pointer;
  text-align: left;
  border-radius: 3px;
  &:focus-visible { outline: 3px solid ${theme.focus}; outline-offset: 2px; }
`;

const Note = styled.p`
  margin: 0 0 0.5rem;
  padding: 0.4rem 0.6rem;
  border-radius: 6px;
  background: ${theme.panel};
  color: ${theme.muted};
  font-size: 0.9rem;
`;

const Alert = styled.div`
  margin: 0 1rem 1rem;
  padding: 0.6rem 0.8rem;
  border-radius: 6px;
  border: 1px solid ${theme.danger};
  color: ${theme.danger};
  background: ${theme.bg};
  p { margin: 0; }
`;

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

// loadImage returns a blob of an image resource, kept in IndexedDB so that
// it shows offline too.
export async function loadImage(api: Api, id: string, cid: string): Promise<Blob> {
  const kept = await getBlob(id, cid).catch(() => undefined);
  if (kept) return kept;
  const b = await api.download(id, cid);
  await putBlob(id, cid, b).catch(() => {});
  return b;
}

// inlineImages resolves the cid: URLs of html to blob URLs of the message's
// own parts; the caller revokes them.
async function inlineImages(api: Api, m: Message, html: string): Promise<Map<string, string>> {
  const urls = new Map<string, string>();
  const want = cidsOf(html);
  if (want.length === 0) return urls;
  let doc = m.placeholder;
  if (!doc) {
    try {
      doc = (await api.get(m.id)).placeholder;
    } catch {
      /* offline: by the resource's own id only */
    }
  }
  const parts = inlineParts(doc);
  for (const id of want) {
    const leaf = parts.get(id) ?? (m.attachments.some((a) => a.content_id === id) ? { contentId: id, contentType: '' } : undefined);
    if (!leaf) continue;
    try {
      urls.set(id, URL.createObjectURL(await loadImage(api, m.id, leaf.contentId)));
    } catch {
      /* not arrived, or offline: it shows as its words */
    }
  }
  return urls;
}

// NoticeSummary says in words what a delivery-status notice means; the
// server's text stays below it, without resolver addresses.
function NoticeSummary({ b }: { b: Bounce }) {
  return (
    <Alert role="note" data-testid="bounce-summary">
      <p><strong>Not delivered to {b.recipients.join(', ') || 'the recipients'}.</strong></p>
      <p>{b.human}</p>
    </Alert>
  );
}

function Body({ api, m }: { api: Api; m: Message }) {
  const [state, setState] = useState<{ html?: string; text?: string; error?: string; blocked?: number; bounce?: Bounce }>({});
  const frame = useRef<HTMLIFrameElement>(null);
  useEffect(() => {
    let live = true;
    let urls = new Map<string, string>();
    (async () => {
      try {
        if (m.html) {
          const html = await loadBody(api, m, m.html);
          urls = await inlineImages(api, m, html);
          const safe = sanitizeBody(html, { cid: (id) => urls.get(id) });
          if (live) setState({ html: frameDocument(safe.html), blocked: safe.blocked });
        } else if (m.text) {
          const text = await loadBody(api, m, m.text);
          const bounce = isNotice(m.from, m.subject) ? (parseNotice(text) ?? undefined) : undefined;
          if (live) setState({ text: bounce ? scrub(text) : text, bounce });
        } else if (live) setState({ text: '' });
      } catch (e) {
        const msg = e instanceof ApiError && e.code === 'not_ready' ? 'This message is still arriving from the sender’s server.' : humanError(e, 'showing this message');
        if (live) setState({ error: msg });
      }
    })();
    return () => {
      live = false;
      for (const u of urls.values()) URL.revokeObjectURL(u);
    };
  }, [api, m]);
  if (state.error) return <p role="status">{state.error}</p>;
  if (state.html !== undefined) {
    return (
      <>
      {state.blocked ? <Note data-testid="blocked-images">{state.blocked === 1 ? 'A remote image was' : `${state.blocked} remote images were`} blocked, so the sender cannot see that you opened this message.</Note> : null}
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
      </>
    );
  }
  if (state.text !== undefined && state.bounce) {
    return (
      <>
        <NoticeSummary b={state.bounce} />
        <details>
          <summary>What the mail server said</summary>
          <pre data-testid="message-text">{state.text}</pre>
        </details>
      </>
    );
  }
  if (state.text !== undefined) return <pre data-testid="message-text">{state.text}</pre>;
  return <Muted>Loading…</Muted>;
}

// usePulled tells which resources of a message being pulled have arrived
// (a HEAD of each answers 409 not_ready until it has), asking again every
// few seconds until the message is complete.
function usePulled(api: Api, m: Message): Set<string> | null {
  const [arrived, setArrived] = useState<Set<string> | null>(null);
  const fetching = m.status === 'fetching';
  useEffect(() => {
    if (!fetching) {
      setArrived(null);
      return;
    }
    let live = true;
    let t: ReturnType<typeof setTimeout> | undefined;
    const check = async () => {
      const got = new Set<string>();
      for (const a of m.attachments) {
        try {
          await api.fetch(api.resourcePath(m.id, a.content_id), { method: 'HEAD' });
          got.add(a.content_id);
        } catch {
          /* not yet */
        }
      }
      if (!live) return;
      setArrived(got);
      if (got.size < m.attachments.length) t = setTimeout(() => void check(), 2000);
    };
    void check();
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [api, m.id, m.attachments, fetching]);
  return arrived;
}

function AttachmentItem({ api, m, a, pending }: { api: Api; m: Message; a: Attachment; pending: boolean }) {
  const [preview, setPreview] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const image = /^image\/(png|jpeg|gif|webp|bmp)/i.test(a.content_type) && a.size <= 10 << 20 && !pending;
  useEffect(() => {
    if (!image) return;
    let url = '';
    let live = true;
    loadImage(api, m.id, a.content_id).then(
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
      setError(humanError(e, 'the download'));
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
        <Button type="button" onClick={download} disabled={busy || pending} aria-label={pending ? `${name} is still arriving` : `Download ${name}`}>
          {pending ? 'Arriving…' : busy ? 'Downloading…' : 'Download'}
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
  onSeen: (m: Message, seen: boolean) => void;
  noticeFor?: (m: Message) => Message | undefined; // the delivery-failure notice of a sent message
}

// movable is where a message may move by hand (§8.18): not into drafts or
// sent, nor trash (that is Delete), nor where it is.
function movable(folders: readonly Folder[], m: Message): Folder[] {
  if (m.folder === 'drafts' || m.folder === 'trash') return [];
  return folders.filter((f) => f !== m.folder && f !== 'drafts' && f !== 'sent' && f !== 'trash');
}

// SentFailure tells on a sent message that some recipients did not get it,
// from the notice the server put in the inbox.
function SentFailure({ api, notice }: { api: Api; notice: Message }) {
  const [b, setB] = useState<Bounce | null>(null);
  useEffect(() => {
    let live = true;
    if (notice.text) {
      loadBody(api, notice, notice.text).then(
        (t) => live && setB(parseNotice(t)),
        () => {},
      );
    }
    return () => {
      live = false;
    };
  }, [api, notice]);
  return (
    <Alert role="alert" data-testid="sent-failure">
      <p><strong>Not delivered{b ? ` to ${b.recipients.join(', ')}` : ''}.</strong></p>
      <p>{b ? b.human : 'The mail system gave up on this message; see the notice in your inbox.'}</p>
    </Alert>
  );
}

// deliveryLabel says where a sent message is for one recipient, in words
// (docs/PROTOCOL.md §8.20): the exchanger's reply for SMTP recipients, the
// next try of a deferred one.
export function deliveryLabel(d: NonNullable<Message['deliveries']>[number]): string {
  const via = d.via === 'smtp' ? ' by SMTP' : d.via === 'pullmail' ? '' : d.via === 'local' ? ' (this server)' : '';
  const reply = d.reply ? `: ${scrub(d.reply)}` : '';
  switch (d.state) {
    case 'delivered':
      return `delivered${via}${d.via === 'smtp' && d.tls === 'none' ? ', unencrypted' : ''}`;
    case 'queued':
      return 'waiting to be sent';
    case 'deferred':
      return `not yet delivered${reply}${d.next_retry ? ` · trying again ${formatDate(d.next_retry)}` : ''}`;
    case 'failed':
      return `not delivered${reply}`;
  }
}

// Deliveries lists each recipient's delivery state of a sent message.
function Deliveries({ m }: { m: Message }) {
  if (m.status !== 'sent' || !m.deliveries?.length) return null;
  return (
    <DeliveryList aria-label="Delivery" data-testid="deliveries">
      {m.deliveries.map((d) => (
        <li key={d.recipient} data-state={d.state}>
          <Muted>{d.recipient}: {deliveryLabel(d)}</Muted>
        </li>
      ))}
    </DeliveryList>
  );
}

const DeliveryList = styled.ul`
  list-style: none;
  margin: 0.25rem 0 0;
  padding: 0;
  li[data-state='failed'] span { color: ${theme.danger}; }
`;

// PullProgress shows how many files of a message being pulled from the
// sender's server have arrived.
function PullProgress({ m, arrived }: { m: Message; arrived: Set<string> | null }) {
  if (m.status !== 'fetching') return null;
  const n = m.attachments.length;
  const k = arrived?.size ?? 0;
  return (
    <p data-testid="pull-progress">
      <Muted>Arriving from the sender’s server{n > 0 ? `: ${k} of ${n} file${n === 1 ? '' : 's'}` : '…'} </Muted>
      {n > 0 && <progress max={n} value={k} aria-label="Files arrived" />}
    </p>
  );
}

function MessageCard({ api, m, open, toggle, folders, noticeFor, onReply, onDelete, onMove, onRestore, onSeen }: Omit<Props, 'thread'> & { m: Message; open: boolean; toggle: () => void }) {
  const arrived = usePulled(api, m);
  const notice = m.status === 'sent' ? noticeFor?.(m) : undefined;
  return (
    <Card aria-label={`Message from ${m.from}`}>
      <header>
        <p>
          <SenderButton type="button" onClick={toggle} aria-expanded={open}>{m.from}</SenderButton>
        </p>
        <p><Muted>To: {m.to.join(', ') || '—'}{m.cc?.length ? ` · Cc: ${m.cc.join(', ')}` : ''}{m.bcc?.length ? ` · Bcc: ${m.bcc.join(', ')}` : ''}</Muted></p>
        <p>
          <Muted>
            {m.date ? <time dateTime={m.date} title={fullDate(m.date)}>{formatDate(m.date)} · {fullDate(m.date)}</time> : 'draft'}
            {m.status === 'failed' ? ` · could not be fetched: ${scrub(m.status_reason ?? '')}` : ''}
          </Muted>
        </p>
        <PullProgress m={m} arrived={arrived} />
        <Deliveries m={m} />
      </header>
      {notice && <SentFailure api={api} notice={notice} />}
      {open && (
        <>
          <div className="body"><Body api={api} m={m} /></div>
          {m.attachments.length > 0 && (
            <Attachments aria-label="Attachments">
              {m.attachments.map((a, i) => <AttachmentItem key={`${a.content_id}-${i}`} api={api} m={m} a={a} pending={m.status === 'fetching' && !arrived?.has(a.content_id)} />)}
            </Attachments>
          )}
          <div className="actions">
            <Button type="button" onClick={() => onReply(m, 'reply')} aria-keyshortcuts="r">Reply</Button>
            <Button type="button" onClick={() => onReply(m, 'replyAll')} aria-keyshortcuts="a">Reply all</Button>
            <Button type="button" onClick={() => onReply(m, 'forward')} aria-keyshortcuts="f">Forward</Button>
            {m.status !== 'sent' && m.status !== 'draft' && (
              <Button type="button" onClick={() => onSeen(m, !m.seen)}>{m.seen ? 'Mark unread' : 'Mark read'}</Button>
            )}
            {m.folder === 'trash' ? (
              <Button type="button" onClick={() => onRestore(m)}>Restore</Button>
            ) : (
              m.folder !== 'archive' && m.folder !== 'drafts' && <Button type="button" onClick={() => onMove(m, 'archive')} aria-keyshortcuts="e">Archive</Button>
            )}
            {movable(folders, m).length > 0 && (
              <select aria-label="Move to folder" value="" onChange={(e) => e.target.value && onMove(m, e.target.value)}>
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
  );
}

export function Conversation(props: Props) {
  const { thread } = props;
  const last = thread[thread.length - 1]!;
  const [open, setOpen] = useState<Set<string>>(() => new Set([last.id]));
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => setOpen((o) => new Set([...o, last.id])), [last.id]);
  const subject = useMemo(() => last.subject || '(no subject)', [last]);
  return (
    <Wrap aria-label="Conversation" data-testid="conversation">
      <h2 ref={heading} tabIndex={-1}>{subject}</h2>
      {thread.map((m) => (
        <MessageCard key={m.id} {...props} m={m} open={open.has(m.id)} toggle={() => setOpen((o) => { const n = new Set(o); if (n.has(m.id)) n.delete(m.id); else n.add(m.id); return n; })} />
      ))}
    </Wrap>
  );
}
