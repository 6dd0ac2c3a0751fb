// @vitest-environment jsdom
// Component tests (Testing Library) of the message list, the compose form
// and the conversation, in jsdom with a real IndexedDB implementation
// (fake-indexeddb) and the app's own controller; nothing reaches a server,
// so requests fail as they do offline.
import 'fake-indexeddb/auto';
import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MailController } from '../lib/controller';
import { kvGet, putBody } from '../lib/db';
import { Session } from '../lib/oauth';
import type { Message } from '../lib/types';
import { Compose, LOCAL_DRAFT, withCids, type LocalDraft } from './Compose';
import { Conversation } from './Conversation';
import { MessageList, PAGE_ROWS } from './MessageList';

afterEach(cleanup);

function msg(p: Partial<Message>): Message {
  return {
    id: 'm1', message_id: '<m1@a.test>', thread_id: '<t1@a.test>', folder: 'inbox', status: 'complete', seen: false,
    from: 'Alice <alice@a.test>', to: ['carol@b.test'], subject: 'Hello', date: new Date().toISOString(),
    created: new Date().toISOString(), updated: new Date().toISOString(), attachments: [], size: 10, ...p,
  } as Message;
}

describe('MessageList', () => {
  const list = [
    msg({ id: 'a', subject: 'First', from: 'Alice <alice@a.test>' }),
    msg({ id: 'b', subject: 'Second', seen: true, from: 'Bob <bob@b.test>' }),
    msg({ id: 'c', subject: 'Mine', folder: 'sent', status: 'sent', message_id: '<c@a.test>', to: ['Dan <dan@nowhere.test>'] }),
  ];

  it('shows sender, subject, snippet, unread and delivery failures', () => {
    render(<MessageList folder="inbox" messages={list} selected={null} onSelect={() => {}} onOpen={() => {}} snippets={new Map([['a', 'See you at noon']])} failed={new Set(['<c@a.test>'])} />);
    const rows = screen.getAllByRole('option');
    expect(rows).toHaveLength(3);
    expect(rows[0]!.textContent).toContain('Unread, Alice');
    expect(rows[0]!.textContent).toContain('First');
    expect(rows[0]!.textContent).toContain('— See you at noon');
    expect(rows[1]!.textContent).not.toContain('Unread');
    expect(rows[2]!.textContent).toContain('Dan'); // what I sent names whom to
    expect(rows[2]!.textContent).toContain('not delivered');
    expect(rows[0]!.textContent).toContain('now');
  });

  it('moves with the arrow keys and opens with Enter', () => {
    const onSelect = vi.fn();
    const onOpen = vi.fn();
    render(<MessageList folder="inbox" messages={list} selected="a" onSelect={onSelect} onOpen={onOpen} />);
    const box = screen.getByRole('listbox', { name: 'Messages in Inbox' });
    fireEvent.keyDown(box, { key: 'ArrowDown' });
    expect(onSelect).toHaveBeenLastCalledWith('b');
    fireEvent.keyDown(box, { key: 'End' });
    expect(onSelect).toHaveBeenLastCalledWith('c');
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onOpen).toHaveBeenLastCalledWith('a');
  });

  it('draws a long list a page at a time, telling each row its place', () => {
    const many = Array.from({ length: 1000 }, (_, i) => msg({ id: `n${i}`, subject: `S${i}` }));
    const { rerender } = render(<MessageList folder="inbox" messages={many} selected={null} onSelect={() => {}} onOpen={() => {}} />);
    let rows = screen.getAllByRole('option');
    expect(rows).toHaveLength(PAGE_ROWS);
    expect(rows[0]!.getAttribute('aria-setsize')).toBe('1000');
    expect(rows[299]!.getAttribute('aria-posinset')).toBe('300');
    rerender(<MessageList folder="inbox" messages={many} selected="n999" onSelect={() => {}} onOpen={() => {}} />);
    rows = screen.getAllByRole('option');
    expect(rows).toHaveLength(1000);
    expect(rows[999]!.getAttribute('aria-selected')).toBe('true');
  });

  it('says what an empty list is', () => {
    render(<MessageList folder="trash" messages={[]} selected={null} onSelect={() => {}} onOpen={() => {}} />);
    expect(screen.getByText('No messages in Trash.')).toBeTruthy();
  });
});

describe('Compose', () => {
  const init = { to: '', cc: '', bcc: '', subject: '', text: '', forwarded: [] };

  it('focuses To, keeps every change on this device and checks addresses', async () => {
    const ctl = new MailController(new Session());
    render(<Compose ctl={ctl} init={init} onClose={() => {}} />);
    const to = screen.getByLabelText('To') as HTMLInputElement;
    expect(document.activeElement).toBe(to);
    fireEvent.change(to, { target: { value: 'not an address' } });
    expect(screen.getByText(/Not an address: not an address/)).toBeTruthy();
    fireEvent.change(to, { target: { value: 'bob@b.test' } });
    fireEvent.change(screen.getByLabelText('Message'), { target: { value: 'words that must not be lost' } });
    await waitFor(async () => expect((await kvGet<LocalDraft>(LOCAL_DRAFT))?.init.text).toBe('words that must not be lost'));
    expect((await kvGet<LocalDraft>(LOCAL_DRAFT))?.init.to).toBe('bob@b.test');
  });

  it('asks before the tab closes with unsaved words', () => {
    const ctl = new MailController(new Session());
    render(<Compose ctl={ctl} init={init} onClose={() => {}} />);
    fireEvent.change(screen.getByLabelText('Message'), { target: { value: 'unsaved' } });
    const e = new Event('beforeunload', { cancelable: true });
    window.dispatchEvent(e);
    expect(e.defaultPrevented).toBe(true);
  });

  it('focuses the text of a reply, sends with Ctrl+Enter, closes with Escape', async () => {
    const ctl = new MailController(new Session());
    const onClose = vi.fn();
    render(<Compose ctl={ctl} init={{ ...init, to: 'not-an-address', subject: 'Re: x', inReplyTo: '<x@a.test>', text: '\n\n> quoted' }} onClose={onClose} />);
    const body = screen.getByLabelText('Message') as HTMLTextAreaElement;
    expect(document.activeElement).toBe(body);
    expect(body.selectionStart).toBe(0);
    fireEvent.keyDown(body, { key: 'Enter', ctrlKey: true });
    expect((await screen.findByRole('alert')).textContent).toBe('Add at least one recipient.');
    await act(async () => {
      fireEvent.keyDown(body, { key: 'Escape' });
    });
    expect(onClose).toHaveBeenCalled();
  });

  it('completes addresses from correspondents', () => {
    const ctl = new MailController(new Session());
    render(<Compose ctl={ctl} init={init} contacts={['Carol <carol@c.test>', 'Bob <bob@b.test>']} onClose={() => {}} />);
    const to = screen.getByRole('combobox', { name: 'To' }) as HTMLInputElement;
    fireEvent.change(to, { target: { value: 'dan@d.test, car' } });
    expect(to.getAttribute('aria-expanded')).toBe('true');
    expect(screen.getAllByRole('option').map((o) => o.textContent)).toEqual(['Carol <carol@c.test>']);
    fireEvent.keyDown(to, { key: 'Enter' });
    expect(to.value).toBe('dan@d.test, Carol <carol@c.test>, ');
    expect(to.getAttribute('aria-expanded')).toBe('false');
  });

  it('switches to rich text and keeps the HTML with its plain form', async () => {
    const ctl = new MailController(new Session());
    render(<Compose ctl={ctl} init={{ ...init, text: 'first line' }} onClose={() => {}} />);
    fireEvent.click(screen.getByRole('button', { name: 'Formatting' }));
    expect(screen.getByRole('button', { name: 'Formatting' }).getAttribute('aria-pressed')).toBe('true');
    expect(screen.getByRole('toolbar', { name: 'Formatting' })).toBeTruthy();
    const editor = screen.getByRole('textbox', { name: 'Message' });
    expect(editor.innerHTML).toBe('<div>first line</div>');
    editor.innerHTML = '<div>first <b>bold</b> line</div>';
    fireEvent.input(editor);
    await waitFor(async () => expect((await kvGet<LocalDraft>(LOCAL_DRAFT))?.init.html).toBe('<div>first <b>bold</b> line</div>'));
    expect((await kvGet<LocalDraft>(LOCAL_DRAFT))?.init.text).toBe('first bold line\n');
  });

  it('names pasted images by cid: once uploaded', () => {
    expect(withCids('<img src="blob:https://a.test/1"><img src="blob:https://a.test/2">', [{ url: 'blob:https://a.test/1', contentId: 'C1' }])).toBe('<img src="cid:C1"><img src="blob:https://a.test/2">');
  });

  it('shows why the last send was not delivered, at the top', () => {
    const ctl = new MailController(new Session());
    render(<Compose ctl={ctl} init={init} failure="Not delivered to bob@nowhere.test." onClose={() => {}} />);
    expect(screen.getByRole('alert').textContent).toBe('Not delivered to bob@nowhere.test.');
  });
});

describe('Conversation', () => {
  const ctl = new MailController(new Session());
  const props = { api: ctl.api, folders: ['inbox', 'archive'], onReply: vi.fn(), onDelete: vi.fn(), onMove: vi.fn(), onRestore: vi.fn(), onSeen: vi.fn() };

  it('shows the text kept on this device and offers Mark unread or Mark read', async () => {
    const m = msg({ id: 'k1', seen: true, text: { content_id: 'T1', content_type: 'text/plain', size: 5 } });
    await putBody('k1', 'T1', 'Hello from the local copy');
    const { rerender } = render(<Conversation {...props} thread={[m]} />);
    expect(await screen.findByText('Hello from the local copy')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Mark unread' }));
    expect(props.onSeen).toHaveBeenLastCalledWith(m, false);
    rerender(<Conversation {...props} thread={[{ ...m, seen: false }]} />);
    expect(screen.getByRole('button', { name: 'Mark read' })).toBeTruthy();
  });

  it('lists each recipient’s delivery of a sent message', () => {
    const m = msg({
      id: 'k9', status: 'sent', folder: 'sent',
      deliveries: [
        { recipient: 'bob@b.test', domain: 'b.test', via: 'pullmail', state: 'delivered', updated: '2026-12-03T10:00:00Z' },
        { recipient: 'carol@smtp.test', domain: 'smtp.test', via: 'smtp', state: 'deferred', reply: '451 4.7.1 try later', code: 451, updated: '2026-12-03T10:00:00Z' },
        { recipient: 'dave@smtp.test', domain: 'smtp.test', via: 'smtp', state: 'failed', reply: '550 5.1.1 no such user', code: 550, updated: '2026-12-03T10:00:00Z' },
      ],
    });
    render(<Conversation {...props} thread={[m]} />);
    const items = screen.getByRole('list', { name: 'Delivery' }).querySelectorAll('li');
    expect([...items].map((li) => li.textContent)).toEqual([
      'bob@b.test: delivered',
      'carol@smtp.test: not yet delivered: 451 4.7.1 try later',
      'dave@smtp.test: not delivered: 550 5.1.1 no such user',
    ]);
  });

  it('folds a message with the sender button', async () => {
    const m = msg({ id: 'k2', text: { content_id: 'T2', content_type: 'text/plain', size: 2 } });
    await putBody('k2', 'T2', 'hi');
    render(<Conversation {...props} thread={[m]} />);
    const sender = screen.getByRole('button', { name: 'Alice <alice@a.test>' });
    expect(sender.getAttribute('aria-expanded')).toBe('true');
    fireEvent.click(sender);
    expect(sender.getAttribute('aria-expanded')).toBe('false');
    expect(screen.queryByRole('button', { name: 'Reply' })).toBeNull();
  });

  it('keeps Download off while the file is still arriving', async () => {
    const m = msg({ id: 'k3', status: 'fetching', attachments: [{ content_id: 'F1', content_type: 'application/pdf', size: 9, filename: 'a.pdf' }] });
    render(<Conversation {...props} thread={[m]} />);
    const b = screen.getByRole('button', { name: 'a.pdf is still arriving' }) as HTMLButtonElement;
    expect(b.disabled).toBe(true);
    expect(screen.getByTestId('pull-progress').textContent).toContain('0 of 1 file');
  });

  it('says what a delivery-failure notice means, without the resolver', async () => {
    const n = msg({ id: 'k4', from: 'Mail Delivery System <postmaster@a.test>', subject: 'Undelivered mail: bob@nowhere.test', text: { content_id: 'T4', content_type: 'text/plain', size: 9 } });
    await putBody('k4', 'T4', 'Your message <x@a.test> could not be delivered to:\n\n    bob@nowhere.test\n\nThe mail system at a.test gave up on it. The reason:\n\n    lookup nowhere.test on 127.0.0.1:53: no such host\n');
    render(<Conversation {...props} thread={[n]} />);
    const s = await screen.findByTestId('bounce-summary');
    expect(s.textContent).toContain('Not delivered to bob@nowhere.test.');
    expect(s.textContent).toContain('does not exist');
    expect(screen.getByTestId('conversation').textContent).not.toContain('127.0.0.1');
  });
});
