// Settings kept on this device: the signature new messages and replies
// start with, and the colour scheme.
import { useEffect, useRef, useState } from 'react';
import { Dialog } from './Shortcuts';
import { Button } from './common';
import { theme, type Scheme } from './theme';

export interface Prefs {
  signature: string;
  scheme: Scheme;
}

// withSignature puts the signature (after the "-- " line of RFC 3676
// §4.3) below where the user writes, above any quote.
export function withSignature(text: string, signature: string): string {
  const sig = signature.trim();
  if (!sig) return text;
  return `\n\n-- \n${sig}${text ? `\n${text}` : ''}`;
}

export function Settings({ prefs, onSave, onClose }: { prefs: Prefs; onSave: (p: Prefs) => void; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [signature, setSignature] = useState(prefs.signature);
  const [scheme, setScheme] = useState<Scheme>(prefs.scheme);
  useEffect(() => {
    const d = ref.current;
    const back = document.activeElement as HTMLElement | null;
    if (d && !d.open) d.showModal?.();
    return () => back?.focus?.();
  }, []);
  return (
    <Dialog ref={ref} aria-labelledby="settings-title" onClose={onClose} onCancel={onClose} data-testid="settings">
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          onSave({ signature, scheme });
        }}
        style={{ display: 'flex', flexDirection: 'column', gap: '0.75rem', minWidth: 'min(26rem, 80vw)' }}
      >
        <h2 id="settings-title">Settings</h2>
        <div>
          <label htmlFor="signature" style={{ fontWeight: 600, display: 'block' }}>Signature</label>
          <textarea id="signature" rows={4} value={signature} onChange={(e) => setSignature(e.target.value)}
            style={{ width: '100%', padding: '0.5rem', border: `1px solid ${theme.muted}`, borderRadius: 6, background: theme.bg, color: theme.text }} />
        </div>
        <div>
          <label htmlFor="scheme" style={{ fontWeight: 600, display: 'block' }}>Colours</label>
          <select id="scheme" value={scheme} onChange={(e) => setScheme(e.target.value as Scheme)}>
            <option value="system">As the system</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
        </div>
        <div style={{ display: 'flex', gap: '0.5rem' }}>
          <Button type="submit" $primary>Save</Button>
          <Button type="button" onClick={onClose}>Cancel</Button>
        </div>
      </form>
    </Dialog>
  );
}
