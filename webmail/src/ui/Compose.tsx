// The compose form: recipients checked as typed, attachments uploaded at
// once (resumable, with a progress bar), the draft kept in IndexedDB on
// every change and saved to the server a moment after the last one; the tab
// asks before it closes with words the server does not have yet.
import { useCallback, useEffect, useRef, useState, type FormEvent } from 'react';
import styled from 'styled-components';
import { checkList, formatAddress } from '../lib/address';
import { htmlToText, textToHTML, type ComposeInit } from '../lib/compose';
import type { MailController } from '../lib/controller';
import { kvDelete, kvSet } from '../lib/db';
import { humanError, offline } from '../lib/human';
import { buildDraft, leafOf, type Leaf } from '../lib/placeholder';
import { sanitizeHTML } from '../lib/sanitize';
import { ApiError, type Attachment, type Message } from '../lib/types';
import { resumableUpload } from '../lib/upload';
import { AddressInput } from './AddressInput';
import { Button, Muted, formatSize } from './common';
import { theme } from './theme';

const Form = styled.form`
  display: flex;
  flex-direction: column;
  gap: 0.6rem;
  padding: 1rem;
  overflow-y: auto;
  flex: 1;
  h2 { margin: 0; font-size: 1.3rem; }
  label { font-weight: 600; display: block; margin-bottom: 0.15rem; }
  input[type='text'], input[type='email'], textarea {
    width: 100%; padding: 0.5rem; border: 1px solid ${theme.muted}; border-radius: 6px; background: ${theme.bg}; color: ${theme.text};
  }
  input[aria-invalid='true'] { border-color: ${theme.danger}; }
  textarea, .editor { min-height: 12rem; resize: vertical; }
  .label { font-weight: 600; }
  .editor { width: 100%; padding: 0.5rem; border: 1px solid ${theme.muted}; border-radius: 6px; background: ${theme.bg}; color: ${theme.text}; overflow-y: auto; }
  .toolbar { display: flex; gap: 0.25rem; margin-bottom: 0.25rem; }
  .toolbar button:nth-child(1) { font-weight: 700; }
  .toolbar button:nth-child(2) { font-style: italic; }
  button[aria-pressed='true'] { background: ${theme.accentSoft}; border-color: ${theme.accent}; }
  .toolbar button { min-width: 2.2rem; padding: 0.3rem 0.5rem; }
  .err { color: ${theme.danger}; margin: 0.2rem 0 0; font-size: 0.9rem; }
  .failure { border: 1px solid ${theme.danger}; border-radius: 6px; padding: 0.5rem 0.7rem; margin: 0; }
  .row { display: flex; gap: 0.5rem; align-items: center; flex-wrap: wrap; }
  ul { list-style: none; padding: 0; margin: 0; }
  li { padding: 0.3rem 0; }
  progress { width: 12rem; height: 0.8rem; vertical-align: middle; }
`;

interface Att {
  key: string;
  name: string;
  type: string;
  size: number;
  sent: number;
  leaf?: Leaf;
  error?: string;
  file?: File;
  from?: { message: string; attachment: Attachment }; // forwarded from a message
  url?: string; // an image pasted or dropped into the text: its blob URL there
}

// withCids puts cid: URLs (RFC 2392) where the editor shows pasted images
// by their blob URLs, for the images whose part is uploaded.
export function withCids(html: string, inline: readonly { url: string; contentId: string }[]): string {
  let out = html;
  for (const i of inline) out = out.split(i.url).join(`cid:${i.contentId}`);
  return out;
}

export interface ComposeProps {
  ctl: MailController;
  init: ComposeInit;
  draft?: Message | { id: string; message_id: string }; // editing an existing draft
  forwardFrom?: string; // the message whose attachments a forward carries
  restored?: boolean; // reopened from this device's copy after a reload
  failure?: string; // why the last send of these words was not delivered
  contacts?: readonly string[]; // correspondents, for autocomplete
  onClose: (sent?: Message, fields?: ComposeInit) => void;
}

// LOCAL_DRAFT is the IndexedDB key of the open compose form's words.
export const LOCAL_DRAFT = 'compose';

// SAVE_MS is how long after the last change the draft goes to the server.
export const SAVE_MS = 1000;

// LocalDraft is what this device keeps of the open form, written on every
// change, so that a reload, a crash or a send without network loses nothing.
export interface LocalDraft {
  init: ComposeInit;
  draft: { id: string; message_id: string } | null;
  saved: boolean; // the server has these words
  at: number; // when written (ms), so the newer of two copies wins
}

// IndexedDB writes are asynchronous, and a reload can abort the last one;
// so when the page goes away the form is also written, synchronously, to
// sessionStorage (this tab only), and the next start takes the newer copy.
export function flushLocal(d: LocalDraft | null): void {
  try {
    if (d) sessionStorage.setItem(LOCAL_DRAFT, JSON.stringify(d));
    else sessionStorage.removeItem(LOCAL_DRAFT);
  } catch {
    /* storage full or refused: IndexedDB's copy stands */
  }
}

// takeLocal returns the newer of the two copies (the tab's is forgotten
// when the form closes).
export function takeLocal(fromDB: LocalDraft | undefined): LocalDraft | undefined {
  let tab: LocalDraft | undefined;
  try {
    tab = JSON.parse(sessionStorage.getItem(LOCAL_DRAFT) ?? 'null') ?? undefined;
  } catch {
    tab = undefined;
  }
  if (!tab) return fromDB;
  if (!fromDB) return tab;
  return (tab.at ?? 0) >= (fromDB.at ?? 0) ? tab : fromDB;
}

let seq = 0;

export function Compose({ ctl, init, draft, forwardFrom, restored, failure, contacts, onClose }: ComposeProps) {
  const api = ctl.api;
  const [to, setTo] = useState(init.to);
  const [cc, setCc] = useState(init.cc);
  const [bcc, setBcc] = useState(init.bcc);
  const [subject, setSubject] = useState(init.subject);
  const [text, setText] = useState(init.text);
  // Rich text: the editor's HTML (sanitised before it is sent); undefined
  // while the message is plain text.
  const [html, setHtml] = useState<string | undefined>(init.html);
  const editorRef = useRef<HTMLDivElement>(null);
  const [atts, setAtts] = useState<Att[]>(() =>
    init.forwarded.map((a) => ({ key: `f${seq++}`, name: a.filename || a.content_id, type: a.content_type, size: a.size, sent: a.size, leaf: leafOf(a), from: forwardFrom ? { message: forwardFrom, attachment: a } : undefined })),
  );
  const [status, setStatus] = useState(restored ? 'Restored from this device' : draft ? 'Draft' : '');
  const [error, setError] = useState('');
  const [touched, setTouched] = useState(!!restored);
  const [sending, setSending] = useState(false);
  const draftRef = useRef<{ id: string; messageId: string } | null>(draft ? { id: draft.id, messageId: draft.message_id } : null);
  const saving = useRef<Promise<void>>(Promise.resolve());
  const dirty = useRef(!!restored);
  const closed = useRef(false);
  const attsRef = useRef(atts);
  attsRef.current = atts;

  const checks = { to: checkList(to), cc: checkList(cc), bcc: checkList(bcc) };
  const fieldsRef = useRef({ checks, subject, text, html });
  fieldsRef.current = { checks, subject, text, html };

  // fields is the form as a ComposeInit: what this device keeps and what a
  // failed delivery reopens.
  const fields = useCallback(
    (): ComposeInit => ({
      ...init,
      to,
      cc,
      bcc,
      subject,
      text,
      // Kept with cid: URLs: a blob URL dies with the page.
      html: html === undefined ? undefined : withCids(html, atts.filter((a) => a.url && a.leaf).map((a) => ({ url: a.url!, contentId: a.leaf!.contentId }))),
      forwarded: atts
        .filter((a) => a.leaf)
        .map((a) => ({ content_id: a.leaf!.contentId, content_type: a.leaf!.contentType, size: a.leaf!.size, filename: a.leaf!.filename, disposition: 'attachment' as const })),
    }),
    [init, to, cc, bcc, subject, text, html, atts],
  );

  // keepLocal writes the form to IndexedDB; it runs on every change.
  const latest = useRef<LocalDraft | null>(null);
  const fieldsFn = useRef(fields);
  fieldsFn.current = fields;
  const keepLocal = useCallback(
    (saved: boolean) => {
      if (closed.current) return;
      const d: LocalDraft = { init: fields(), draft: draftRef.current ? { id: draftRef.current.id, message_id: draftRef.current.messageId } : null, saved, at: Date.now() };
      latest.current = d;
      void kvSet(LOCAL_DRAFT, d).catch(() => {});
    },
    [fields],
  );

  // First focus: To for a new message or a forward, the text for a reply
  // (the caret before the quote).
  const toRef = useRef<HTMLInputElement>(null);
  const formRef = useRef<HTMLFormElement>(null);
  const bodyRef = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (init.inReplyTo && init.to) {
      bodyRef.current?.focus();
      bodyRef.current?.setSelectionRange(0, 0);
      if (bodyRef.current) bodyRef.current.scrollTop = 0;
    } else toRef.current?.focus();
  }, [init]);

  // Words the server does not have: the browser asks before the tab closes.
  useEffect(() => {
    function onBeforeUnload(e: BeforeUnloadEvent) {
      if (!dirty.current) return;
      e.preventDefault();
      e.returnValue = '';
    }
    function onPageHide() {
      if (closed.current || !latest.current) return;
      flushLocal({ ...latest.current, init: fieldsFn.current(), saved: !dirty.current, at: Date.now() });
    }
    window.addEventListener('beforeunload', onBeforeUnload);
    window.addEventListener('pagehide', onPageHide);
    return () => {
      window.removeEventListener('beforeunload', onBeforeUnload);
      window.removeEventListener('pagehide', onPageHide);
    };
  }, []);

  const patchAtt = (key: string, p: Partial<Att>) => setAtts((xs) => xs.map((x) => (x.key === key ? { ...x, ...p } : x)));

  // save writes the draft (create, then replace); saves run one at a time.
  const save = useCallback((): Promise<void> => {
    saving.current = saving.current.then(async () => {
      const f = fieldsRef.current;
      // Rich text goes as two resources: the sanitised HTML and its plain
      // alternative.
      const inline = attsRef.current.filter((a) => a.url && a.leaf).map((a) => ({ url: a.url!, contentId: a.leaf!.contentId }));
      const safe = f.html !== undefined ? withCids(sanitizeHTML(f.html), inline) : undefined;
      const plain = safe !== undefined ? htmlToText(safe) : f.text;
      const body = await api.uploadSmall(new TextEncoder().encode(plain));
      const rich = safe !== undefined ? await api.uploadSmall(new TextEncoder().encode(`<!doctype html><html><head><meta charset="utf-8"></head><body>${safe}</body></html>`)) : undefined;
      const fmt = (c: ReturnType<typeof checkList>) => c.addresses.map(formatAddress);
      const leaves = attsRef.current.filter((a) => a.leaf).map((a) => a.leaf!);
      const doc = buildDraft({
        to: fmt(f.checks.to),
        cc: fmt(f.checks.cc),
        bcc: fmt(f.checks.bcc),
        subject: f.subject,
        inReplyTo: init.inReplyTo,
        references: init.references,
        messageId: draftRef.current?.messageId,
        text: { contentId: body.content_id, size: body.size, contentType: 'text/plain; charset=UTF-8' },
        html: rich ? { contentId: rich.content_id, size: rich.size, contentType: 'text/html; charset=UTF-8' } : undefined,
        attachments: leaves,
      });
      const m = draftRef.current ? await api.updateDraft(draftRef.current.id, doc) : await api.createDraft(doc);
      draftRef.current = { id: m.id, messageId: m.message_id };
      ctl.update(m);
      dirty.current = false;
      setStatus(`Draft saved ${new Date().toLocaleTimeString('en', { hour: '2-digit', minute: '2-digit', second: '2-digit' })}`);
    });
    return saving.current;
  }, [api, ctl, init]);

  const trySave = useCallback(async () => {
    try {
      await save();
      setError('');
    } catch (e) {
      saving.current = Promise.resolve();
      if (e instanceof ApiError && e.code === 'unknown_resource') {
        await reuploadForwarded();
        return;
      }
      setStatus(offline(e) ? 'Offline: saved on this device; it goes to the server when you are back online' : `Saved on this device; the server refused it: ${e instanceof Error ? e.message : e}`);
      return;
    }
    keepLocal(true);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [save, keepLocal]);

  // Kept on this device at every change, saved to the server SAVE_MS after
  // the last one, and again when the network comes back.
  useEffect(() => {
    if (!touched) return;
    dirty.current = true;
    keepLocal(false);
    const t = setTimeout(() => void trySave(), SAVE_MS);
    return () => clearTimeout(t);
  }, [to, cc, bcc, subject, text, html, atts.length, touched, trySave, keepLocal]);

  // The editor is uncontrolled: its HTML is set when formatting is
  // switched on, and read back on every input.
  const rich = html !== undefined;
  useEffect(() => {
    if (rich && editorRef.current && editorRef.current.innerHTML === '') editorRef.current.innerHTML = html ?? '';
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [rich]);
  function onEditorInput() {
    const h = editorRef.current?.innerHTML ?? '';
    setHtml(h);
    setText(htmlToText(h));
    setTouched(true);
  }
  function toggleRich() {
    if (rich) {
      setText(htmlToText(html ?? ''));
      setHtml(undefined);
    } else {
      setHtml(textToHTML(text));
    }
    setTouched(true);
  }
  // Images pasted or dropped into the text go up at once as inline parts
  // that the HTML names by cid: (the editor shows them by blob URL).
  function insertImages(files: File[]): boolean {
    const images = files.filter((f) => f.type.startsWith('image/'));
    if (images.length === 0) return false;
    editorRef.current?.focus();
    for (const file of images) {
      const url = URL.createObjectURL(file);
      const name = file.name || `image.${file.type.split('/')[1] ?? 'png'}`;
      const esc = name.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
      document.execCommand('insertHTML', false, `<img src="${url}" alt="${esc}" style="max-width:100%">`);
      const a: Att = { key: `i${seq++}`, name, type: file.type, size: file.size, sent: 0, file, url };
      setAtts((xs) => [...xs, a]);
      void upload(a, file);
    }
    onEditorInput();
    return true;
  }

  function format(cmd: string) {
    editorRef.current?.focus();
    if (cmd === 'createLink') {
      const url = prompt('Link to (https://…)')?.trim();
      if (!url || !/^(https?:|mailto:)/i.test(url)) return;
      document.execCommand(cmd, false, url);
    } else document.execCommand(cmd);
    onEditorInput();
  }
  useEffect(() => {
    const again = () => {
      if (dirty.current) void trySave();
    };
    window.addEventListener('online', again);
    return () => window.removeEventListener('online', again);
  }, [trySave]);

  // finish closes the form for good: this device forgets its copy.
  function finish(sent?: Message) {
    closed.current = true;
    dirty.current = false;
    void kvDelete(LOCAL_DRAFT).catch(() => {});
    flushLocal(null);
    onClose(sent, sent ? fields() : undefined);
  }

  async function upload(a: Att, blob: Blob) {
    try {
      let r;
      try {
        r = await resumableUpload(blob, api.uploads, { onProgress: (n) => patchAtt(a.key, { sent: n }) });
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) throw e;
        r = await api.uploadWhole(blob, (n) => patchAtt(a.key, { sent: n })); // a server without resumable uploads
      }
      const leaf: Leaf = { contentId: r.content_id, size: r.size, contentType: a.type || 'application/octet-stream', disposition: a.url ? 'inline' : 'attachment', filename: a.name };
      patchAtt(a.key, { leaf, sent: a.size, error: undefined });
      setTouched(true);
    } catch (e) {
      patchAtt(a.key, { error: offline(e) ? 'you are offline; retry when you are back online' : e instanceof Error ? e.message : String(e) });
    }
  }

  // reuploadForwarded: the server would not let the draft reference a
  // forwarded attachment directly, so the bytes go up again.
  async function reuploadForwarded() {
    const fwd = attsRef.current.filter((a) => a.from);
    if (fwd.length === 0) return;
    setStatus('Copying forwarded attachments…');
    for (const a of fwd) {
      patchAtt(a.key, { leaf: undefined, sent: 0, from: undefined });
      const blob = await api.download(a.from!.message, a.from!.attachment.content_id);
      await upload(a, blob);
    }
    await trySave();
  }

  function addFiles(files: FileList | null) {
    if (!files) return;
    for (const file of Array.from(files)) {
      const a: Att = { key: `a${seq++}`, name: file.name, type: file.type || 'application/octet-stream', size: file.size, sent: 0, file };
      setAtts((xs) => [...xs, a]);
      void upload(a, file);
    }
  }

  const invalid = [...checks.to.invalid, ...checks.cc.invalid, ...checks.bcc.invalid];
  const uploading = atts.some((a) => !a.leaf && !a.error);
  const noRecipient = checks.to.addresses.length + checks.cc.addresses.length + checks.bcc.addresses.length === 0;

  async function onSend(e: FormEvent) {
    e.preventDefault();
    if (invalid.length || noRecipient) {
      setError(noRecipient ? 'Add at least one recipient.' : `Not an address: ${invalid.join(', ')}`);
      return;
    }
    if (uploading) {
      setError('Wait for the attachments to finish uploading.');
      return;
    }
    setSending(true);
    setError('');
    try {
      await save();
      const sent = await api.sendDraft(draftRef.current!.id);
      ctl.update(sent);
      void ctl.sync();
      finish(sent);
    } catch (err) {
      saving.current = Promise.resolve();
      if (err instanceof ApiError && err.code === 'unknown_resource' && atts.some((a) => a.from)) {
        await reuploadForwarded();
        setError('Forwarded attachments were copied; press Send again.');
      } else if (offline(err)) {
        setError('You are offline: the message is kept on this device. Send it when you are back online.');
      } else {
        setError(humanError(err, 'sending'));
      }
    } finally {
      setSending(false);
    }
  }

  // onCloseForm closes; words the server lacks stay on this device until it
  // has them (a failed save leaves them for the next start to reopen).
  async function onCloseForm() {
    if (!dirty.current) {
      finish();
      return;
    }
    closed.current = true;
    onClose();
    try {
      await save();
      await kvDelete(LOCAL_DRAFT);
    } catch {
      saving.current = Promise.resolve();
    }
  }

  async function onDiscard() {
    if (draftRef.current) {
      try {
        await saving.current.catch(() => {});
        await api.remove(draftRef.current.id);
        ctl.forget(draftRef.current.id);
      } catch {
        /* offline: the draft stays */
      }
    }
    finish();
  }

  const field = (id: string, label: string, value: string, set: (v: string) => void, bad: string[]) => (
    <div>
      <label htmlFor={id}>{label}</label>
      <AddressInput
        id={id}
        inputRef={id === 'to' ? toRef : undefined}
        value={value}
        contacts={contacts ?? []}
        invalid={bad.length > 0}
        describedBy={bad.length ? `${id}-err` : undefined}
        onChange={(v) => {
          set(v);
          setTouched(true);
        }}
      />
      {bad.length > 0 && <p className="err" id={`${id}-err`}>Not an address: {bad.join(', ')}</p>}
    </div>
  );

  return (
    <Form
      ref={formRef}
      onSubmit={onSend}
      aria-label="Compose"
      data-testid="compose"
      aria-keyshortcuts="Control+Enter Escape"
      onKeyDown={(e) => {
        // Ctrl+Enter (⌘+Enter) sends; Escape closes, keeping the words.
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          formRef.current?.requestSubmit();
        } else if (e.key === 'Escape' && !e.defaultPrevented) {
          e.preventDefault();
          void onCloseForm();
        }
      }}
    >
      <h2>{draft ? 'Edit draft' : init.inReplyTo ? 'Reply' : init.forwarded.length || init.subject.startsWith('Fwd') ? 'Forward' : 'New message'}</h2>
      {failure && <p className="err failure" role="alert" data-testid="delivery-failure">{failure}</p>}
      {field('to', 'To', to, setTo, checks.to.invalid)}
      {field('cc', 'Cc', cc, setCc, checks.cc.invalid)}
      {field('bcc', 'Bcc', bcc, setBcc, checks.bcc.invalid)}
      <div>
        <label htmlFor="subject">Subject</label>
        <input id="subject" type="text" value={subject} onChange={(e) => { setSubject(e.target.value); setTouched(true); }} />
      </div>
      <div>
        <div className="row" style={{ justifyContent: 'space-between' }}>
          {rich ? <span className="label" id="body-label">Message</span> : <label htmlFor="body">Message</label>}
          <Button type="button" aria-pressed={rich} onClick={toggleRich}>Formatting</Button>
        </div>
        {rich ? (
          <>
            <div className="toolbar" role="toolbar" aria-label="Formatting">
              {([['bold', 'Bold', 'B'], ['italic', 'Italic', 'I'], ['insertUnorderedList', 'Bulleted list', '•'], ['createLink', 'Link', 'Link']] as const).map(([cmd, name, glyph]) => (
                <Button key={cmd} type="button" aria-label={name} title={name} onMouseDown={(e) => e.preventDefault()} onClick={() => format(cmd)}>
                  <span aria-hidden="true">{glyph}</span>
                </Button>
              ))}
            </div>
            <div
              id="body"
              ref={editorRef}
              className="editor"
              contentEditable
              suppressContentEditableWarning
              role="textbox"
              aria-multiline="true"
              aria-labelledby="body-label"
              tabIndex={0}
              onInput={onEditorInput}
              onPaste={(e) => {
                if (insertImages(Array.from(e.clipboardData?.files ?? []))) e.preventDefault();
              }}
              onDragOver={(e) => {
                if (Array.from(e.dataTransfer?.items ?? []).some((i) => i.kind === 'file')) e.preventDefault();
              }}
              onDrop={(e) => {
                if (insertImages(Array.from(e.dataTransfer?.files ?? []))) e.preventDefault();
              }}
              data-testid="editor"
            />
          </>
        ) : (
          <textarea id="body" ref={bodyRef} value={text} onChange={(e) => { setText(e.target.value); setTouched(true); }} />
        )}
      </div>
      <div>
        <label htmlFor="files">Attachments</label>
        <input id="files" type="file" multiple onChange={(e) => { addFiles(e.target.files); e.target.value = ''; }} />
        <ul aria-label="Attached files">
          {atts.map((a) => (
            <li key={a.key}>
              <span>{a.name}</span> <Muted>({formatSize(a.size)}{a.url ? ', in the text' : ''})</Muted>{' '}
              {a.error ? (
                <span className="err" role="alert">upload failed: {a.error} <Button type="button" onClick={() => { patchAtt(a.key, { error: undefined, sent: 0 }); if (a.file) void upload(a, a.file); }}>Retry</Button></span>
              ) : a.leaf ? (
                <Muted>uploaded</Muted>
              ) : (
                <progress max={a.size || 1} value={a.sent} aria-label={`Uploading ${a.name}`} />
              )}{' '}
              <Button type="button" aria-label={`Remove ${a.name}`} onClick={() => { setAtts((xs) => xs.filter((x) => x.key !== a.key)); setTouched(true); }}>Remove</Button>
            </li>
          ))}
        </ul>
      </div>
      {error && <p className="err" role="alert">{error}</p>}
      <div className="row">
        <Button type="submit" $primary disabled={sending}>{sending ? 'Sending…' : 'Send'}</Button>
        <Button type="button" onClick={() => void onCloseForm()}>Close</Button>
        <Button type="button" onClick={onDiscard}>Discard</Button>
        <Muted role="status" aria-live="polite">{status}</Muted>
      </div>
    </Form>
  );
}
