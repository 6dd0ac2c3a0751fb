// The message list: a listbox the arrow keys move through (Home/End too);
// Enter or a click opens the message.
import { useEffect, useRef, useState, type KeyboardEvent } from 'react';
import styled from 'styled-components';
import { displayName } from '../lib/address';
import { formatDate, fullDate } from '../lib/human';
import { folderLabel, type Folder, type Message } from '../lib/types';
import { theme } from './theme';

const List = styled.ul`
  list-style: none;
  margin: 0;
  padding: 0;
  overflow-y: auto;
  flex: 1;
  container-type: inline-size;
`;

// A row is one line where the list is wide (sender, subject — snippet,
// date: about 20 rows on a laptop), two where it is narrow.
const Row = styled.li<{ $selected: boolean; $unread: boolean }>`
  display: grid;
  grid-template-columns: minmax(0, 1fr) auto;
  gap: 0 0.5rem;
  padding: 0.3rem 0.75rem;
  font-size: 0.9rem;
  line-height: 1.35;
  border-bottom: 1px solid ${theme.border};
  cursor: pointer;
  background: ${(p) => (p.$selected ? theme.accentSoft : 'transparent')};
  border-left: 4px solid ${(p) => (p.$unread ? theme.accent : 'transparent')};
  font-weight: ${(p) => (p.$unread ? 600 : 400)};
  &:focus-visible { outline-offset: -3px; }
  content-visibility: auto;
  contain-intrinsic-size: auto 2rem;
  .from, .line { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .date { color: ${theme.muted}; font-size: 0.8rem; font-weight: 400; text-align: right; white-space: nowrap; }
  .line { grid-column: 1 / -1; color: ${theme.text}; }
  .snippet, .status { color: ${theme.muted}; font-weight: 400; }
  @container (min-width: 28rem) {
    grid-template-columns: 11rem minmax(0, 1fr) auto;
    .line { grid-column: 2; grid-row: 1; }
    .date { grid-column: 3; }
  }
`;

// attrEscape quotes a value for an attribute selector (CSS.escape where the
// browser has it).
function attrEscape(v: string): string {
  return typeof CSS !== 'undefined' && CSS.escape ? CSS.escape(v) : v.replace(/["\\]/g, '\\$&');
}

// PAGE_ROWS is how many rows are drawn at first, and added at a time.
export const PAGE_ROWS = 300;

const statusLabel: Record<string, string> = { fetching: 'arriving…', failed: 'failed', draft: 'draft' };

interface Props {
  folder: Folder;
  label?: string; // what the list is, when not a folder (search results)
  empty?: string; // what an empty list says instead of "No messages in FOLDER."
  messages: Message[];
  selected: string | null;
  onSelect: (id: string) => void;
  onOpen: (id: string) => void;
  snippets?: ReadonlyMap<string, string>; // the text's first words, when known
  failed?: ReadonlySet<string>; // sent messages not delivered (by Message-ID)
}

export function MessageList({ folder, label: named, empty, messages, selected, onSelect, onOpen, snippets, failed }: Props) {
  const ref = useRef<HTMLUListElement>(null);
  const index = Math.max(0, messages.findIndex((m) => m.id === selected));
  // Rows are drawn a page at a time: more as the list scrolls near its end
  // or the selection moves on (each row tells its place in the whole list,
  // aria-posinset of aria-setsize); rows off screen skip layout and paint
  // (content-visibility).
  const [shown, setShown] = useState(PAGE_ROWS);
  useEffect(() => setShown(PAGE_ROWS), [folder, named]);
  const limit = Math.min(messages.length, Math.max(shown, index + 50));
  function onScroll() {
    const el = ref.current;
    if (el && limit < messages.length && el.scrollTop + el.clientHeight > el.scrollHeight - 800) setShown(limit + PAGE_ROWS);
  }

  useEffect(() => {
    const el = ref.current?.querySelector<HTMLElement>(`[data-id="${attrEscape(selected ?? '')}"]`);
    if (el && ref.current?.contains(document.activeElement)) el.focus();
  }, [selected]);

  function onKey(e: KeyboardEvent) {
    let next = -1;
    if (e.key === 'ArrowDown') next = Math.min(messages.length - 1, index + 1);
    else if (e.key === 'ArrowUp') next = Math.max(0, index - 1);
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = messages.length - 1;
    else if (e.key === 'Enter' && messages[index]) {
      e.preventDefault();
      onOpen(messages[index]!.id);
      return;
    }
    if (next >= 0 && messages[next]) {
      e.preventDefault();
      onSelect(messages[next]!.id);
    }
  }

  const label = named ?? folderLabel(folder);
  if (messages.length === 0) return <p style={{ padding: '1rem', color: theme.muted }}>{empty ?? `No messages in ${label}.`}</p>;
  return (
    <List ref={ref} role="listbox" aria-label={named ?? `Messages in ${label}`} onKeyDown={onKey} onScroll={onScroll} data-testid="message-list">
      {messages.slice(0, limit).map((m, i) => {
        // What the user wrote shows whom it went to; what they got, who from.
        const mine = m.status === 'sent' || m.status === 'draft';
        const unread = !m.seen && !mine;
        const who = mine ? m.to.map(displayName).join(', ') || '(no recipient)' : displayName(m.from);
        const status = [failed?.has(m.message_id) ? 'not delivered' : statusLabel[m.status], m.attachments.length > 0 ? 'attachment' : ''].filter(Boolean).join(' · ');
        return (
          <Row
            key={m.id}
            data-id={m.id}
            role="option"
            aria-selected={m.id === selected}
            aria-posinset={i + 1}
            aria-setsize={messages.length}
            tabIndex={i === index ? 0 : -1}
            $selected={m.id === selected}
            $unread={unread}
            onClick={() => onOpen(m.id)}
            onFocus={() => m.id !== selected && onSelect(m.id)}
          >
            <span className="from">
              {unread && <span className="visually-hidden">Unread, </span>}
              {who}
            </span>
            <span className="date" title={fullDate(m.date ?? m.updated)}>{formatDate(m.date ?? m.updated)}</span>
            <span className="line">
              <span className="subject">{m.subject || '(no subject)'}</span>
              {status && <span className="status"> · {status}</span>}
              {snippets?.get(m.id) && <span className="snippet"> — {snippets.get(m.id)}</span>}
            </span>
          </Row>
        );
      })}
    </List>
  );
}
