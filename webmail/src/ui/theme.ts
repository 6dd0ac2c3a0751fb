// Colours chosen for WCAG AA contrast on their backgrounds (text ≥ 4.5:1),
// in a light and a dark scheme. They are CSS custom properties, so that the
// scheme follows the system (prefers-color-scheme) or the user's choice
// (data-theme on <html>, set by the toggle) without re-rendering.
import { createGlobalStyle } from 'styled-components';

const light = {
  bg: '#ffffff',
  panel: '#f4f5f7',
  text: '#1b1f24',
  muted: '#4b5563', // 7.5:1 on white
  border: '#c9ced6',
  accent: '#1d4ed8', // white on it: 6.7:1
  accentSoft: '#e0e8fb',
  danger: '#a61b1b',
  focus: '#1d4ed8',
  toast: '#1b1f24',
};

const dark: typeof light = {
  bg: '#15181d',
  panel: '#1f242b',
  text: '#e6e8eb', // 14:1 on bg
  muted: '#aab2bd', // 8:1 on bg, 7:1 on panel
  border: '#3b424d',
  accent: '#2f5fd3', // white on it: 5.6:1
  accentSoft: '#22324f', // text on it: 10:1
  danger: '#ff9b9b', // 9:1 on bg
  focus: '#8ab4f8',
  toast: '#2c323b',
};

type Colours = typeof light;

const vars = (c: Colours) =>
  Object.entries(c)
    .map(([k, v]) => `--pm-${k}: ${v};`)
    .join(' ');

export const theme = {
  ...(Object.fromEntries(Object.keys(light).map((k) => [k, `var(--pm-${k})`])) as Record<keyof Colours, string>),
  narrow: '760px',
};

export type Scheme = 'system' | 'light' | 'dark';

// applyScheme sets the user's choice on <html> (system: no attribute).
export function applyScheme(s: Scheme): void {
  if (s === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = s;
}

export const GlobalStyle = createGlobalStyle`
  :root { ${vars(light)} color-scheme: light; }
  @media (prefers-color-scheme: dark) {
    :root:not([data-theme='light']) { ${vars(dark)} color-scheme: dark; }
  }
  :root[data-theme='dark'] { ${vars(dark)} color-scheme: dark; }
  *, *::before, *::after { box-sizing: border-box; }
  html, body, #root { height: 100%; margin: 0; }
  body {
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
    color: ${theme.text};
    background: ${theme.bg};
  }
  :focus-visible { outline: 3px solid ${theme.focus}; outline-offset: 2px; }
  button, input, textarea, select { font: inherit; }
  select { color: ${theme.text}; background: ${theme.bg}; border: 1px solid ${theme.border}; border-radius: 6px; padding: 0.4rem; }
  a { color: ${theme.focus}; }
  .visually-hidden {
    position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
  }
`;
