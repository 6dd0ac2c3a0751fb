// The ? overlay: every keyboard shortcut, in a modal dialog (Escape or the
// button closes it; focus returns where it was).
import { useEffect, useRef } from 'react';
import styled from 'styled-components';
import { Button } from './common';
import { theme } from './theme';

export const SHORTCUTS: readonly [string, string][] = [
  ['c', 'Compose a new message'],
  ['/', 'Search'],
  ['j / k', 'Next / previous message'],
  ['↑ ↓ Home End', 'Move in the list; Enter opens'],
  ['r', 'Reply'],
  ['a', 'Reply all'],
  ['f', 'Forward'],
  ['e', 'Archive'],
  ['#', 'Delete (to Trash, with Undo)'],
  ['Ctrl+Enter', 'Send (while writing)'],
  ['Esc', 'Close the message or the form, clear the search'],
  ['?', 'This list'],
];

export const Dialog = styled.dialog`
  border: 1px solid ${theme.border};
  border-radius: 10px;
  padding: 1.25rem 1.5rem;
  background: ${theme.bg};
  color: ${theme.text};
  max-width: min(30rem, 94vw);
  &::backdrop { background: rgba(0, 0, 0, 0.45); }
  h2 { margin: 0 0 0.75rem; font-size: 1.2rem; }
  dl { display: grid; grid-template-columns: auto 1fr; gap: 0.35rem 1rem; margin: 0 0 1rem; }
  dt { text-align: right; }
  dd { margin: 0; }
  kbd { font: 0.85rem ui-monospace, monospace; border: 1px solid ${theme.border}; border-bottom-width: 2px; border-radius: 4px; padding: 0 0.35rem; background: ${theme.panel}; }
`;

export function Shortcuts({ onClose }: { onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    const back = document.activeElement as HTMLElement | null;
    if (d && !d.open) d.showModal?.();
    return () => back?.focus?.();
  }, []);
  return (
    <Dialog ref={ref} aria-labelledby="shortcuts-title" onClose={onClose} onCancel={onClose} data-testid="shortcuts">
      <h2 id="shortcuts-title">Keyboard shortcuts</h2>
      <dl>
        {SHORTCUTS.map(([k, what]) => (
          <div key={k} style={{ display: 'contents' }}>
            <dt><kbd>{k}</kbd></dt>
            <dd>{what}</dd>
          </div>
        ))}
      </dl>
      <Button type="button" $primary onClick={onClose} autoFocus>Close</Button>
    </Dialog>
  );
}
