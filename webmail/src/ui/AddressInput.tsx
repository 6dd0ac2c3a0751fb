// An address field with autocomplete from correspondents: the ARIA 1.2
// combobox pattern (the input keeps the focus; ↑/↓ move through the
// suggestions, Enter or Tab takes one, Escape closes them).
import { useState, type KeyboardEvent, type Ref } from 'react';
import styled from 'styled-components';
import { accept, suggest } from '../lib/contacts';
import { theme } from './theme';

const Wrap = styled.div`
  position: relative;
  ul[role='listbox'] {
    position: absolute; left: 0; right: 0; top: 100%; z-index: 4; margin: 2px 0 0; padding: 0.25rem 0; list-style: none;
    background: ${theme.bg}; border: 1px solid ${theme.border}; border-radius: 6px; box-shadow: 0 4px 12px rgba(0, 0, 0, 0.2);
  }
  li[role='option'] { padding: 0.3rem 0.6rem; cursor: pointer; }
  li[aria-selected='true'] { background: ${theme.accentSoft}; }
`;

interface Props {
  id: string;
  value: string;
  contacts: readonly string[];
  invalid: boolean;
  describedBy?: string;
  inputRef?: Ref<HTMLInputElement>;
  onChange: (v: string) => void;
}

export function AddressInput({ id, value, contacts, invalid, describedBy, inputRef, onChange }: Props) {
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const matches = open ? suggest(contacts, value) : [];
  const show = matches.length > 0;
  const at = Math.min(active, matches.length - 1);
  const take = (c: string) => {
    onChange(accept(value, c));
    setOpen(false);
  };
  function onKeyDown(e: KeyboardEvent<HTMLInputElement>) {
    if (!show) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      setActive((a) => (a + (e.key === 'ArrowDown' ? 1 : matches.length - 1)) % matches.length);
    } else if ((e.key === 'Enter' && !e.ctrlKey && !e.metaKey) || (e.key === 'Tab' && !e.shiftKey)) {
      e.preventDefault();
      take(matches[at]!);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      setOpen(false);
    }
  }
  return (
    <Wrap>
      <input
        id={id}
        ref={inputRef}
        type="text"
        inputMode="email"
        autoComplete="off"
        role="combobox"
        aria-autocomplete="list"
        aria-expanded={show}
        aria-controls={`${id}-suggestions`}
        aria-activedescendant={show ? `${id}-s${at}` : undefined}
        aria-invalid={invalid}
        aria-describedby={describedBy}
        value={value}
        onChange={(e) => {
          onChange(e.target.value);
          setOpen(true);
          setActive(0);
        }}
        onKeyDown={onKeyDown}
        onBlur={() => setOpen(false)}
      />
      <ul role="listbox" id={`${id}-suggestions`} aria-label="Suggested addresses" hidden={!show}>
        {matches.map((c, i) => (
          <li key={c} id={`${id}-s${i}`} role="option" aria-selected={i === at} onMouseDown={(e) => { e.preventDefault(); take(c); }}>
            {c}
          </li>
        ))}
      </ul>
    </Wrap>
  );
}
