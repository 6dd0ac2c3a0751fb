import styled from 'styled-components';
import { theme } from './theme';

export const Button = styled.button<{ $primary?: boolean }>`
  padding: 0.45rem 0.9rem;
  border-radius: 6px;
  border: 1px solid ${(p) => (p.$primary ? theme.accent : theme.border)};
  background: ${(p) => (p.$primary ? theme.accent : theme.bg)};
  color: ${(p) => (p.$primary ? '#fff' : theme.text)};
  cursor: pointer;
  &:hover { filter: brightness(0.95); }
  &:disabled { opacity: 0.6; cursor: default; }
`;

export const Muted = styled.span`
  color: ${theme.muted};
`;

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

// saveBlob hands a blob to the browser as a download.
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
