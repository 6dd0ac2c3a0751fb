// Colours chosen for WCAG AA contrast on their backgrounds (text ≥ 4.5:1).
import { createGlobalStyle } from 'styled-components';

export const theme = {
  bg: '#ffffff',
  panel: '#f4f5f7',
  text: '#1b1f24',
  muted: '#4b5563', // 7.5:1 on white
  border: '#c9ced6',
  accent: '#1d4ed8', // white on it: 6.7:1
  accentSoft: '#e0e8fb',
  danger: '#a61b1b',
  focus: '#1d4ed8',
  narrow: '760px',
};

export const GlobalStyle = createGlobalStyle`
  *, *::before, *::after { box-sizing: border-box; }
  html, body, #root { height: 100%; margin: 0; }
  body {
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
    color: ${theme.text};
    background: ${theme.bg};
  }
  :focus-visible { outline: 3px solid ${theme.focus}; outline-offset: 2px; }
  button, input, textarea { font: inherit; }
  .visually-hidden {
    position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
  }
`;
