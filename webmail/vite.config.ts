/// <reference types="vitest/config" />
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

// serviceWorker emits sw.js from sw/sw.js with the list of the bundle's files
// to precache and a version derived from their contents, so that the output
// is the same for the same sources (CI rebuilds and compares byte for byte).
function serviceWorker(): Plugin {
  return {
    name: 'pullmail-sw',
    apply: 'build',
    generateBundle(_options, bundle) {
      const files = Object.keys(bundle).filter((f) => !f.endsWith('.map')).sort();
      const h = createHash('sha256');
      for (const f of files) {
        const item = bundle[f]!;
        h.update(f);
        h.update(item.type === 'chunk' ? item.code : item.source);
      }
      // public/ (icons, manifest) is copied as is, outside the bundle:
      // cached too, so that the installed app has its icons offline.
      const pub = new URL('./public/', import.meta.url);
      const extra = readdirSync(pub).sort();
      for (const f of extra) {
        h.update(f);
        h.update(readFileSync(new URL(f, pub)));
      }
      const version = h.digest('hex').slice(0, 16);
      const precache = ['./', ...[...files.filter((f) => f !== 'index.html'), ...extra].sort()];
      const src = readFileSync(new URL('./sw/sw.js', import.meta.url), 'utf8')
        .replace('__PRECACHE__', JSON.stringify(precache))
        .replace('__VERSION__', JSON.stringify(version));
      this.emitFile({ type: 'asset', fileName: 'sw.js', source: src });
    },
  };
}

export default defineConfig({
  base: '/webmail/',
  plugins: [react(), serviceWorker()],
  build: {
    outDir: '../webui/dist',
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 600,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts', 'src/**/*.test.tsx'],
  },
});
