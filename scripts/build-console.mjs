// Builds the operator console (src/console/web) into dist/console: one
// minified script, one stylesheet (uPlot's and ours) and index.html. esbuild
// bundles TypeScript + JSX (Preact) in well under a second; no CDN, no font.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const web = join(root, 'src/console/web');
const out = join(root, 'dist/console');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(web, 'main.tsx') },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: out,
  legalComments: 'none',
  logLevel: 'warning',
  // Nothing from process.env reaches the bundle: it holds no configuration and no secret.
  define: { 'process.env.NODE_ENV': '"production"' },
});
copyFileSync(join(web, 'index.html'), join(out, 'index.html'));
const kb = (f) => (statSync(join(out, f)).size / 1024).toFixed(1);
console.error(`[setup] console built: app.js ${kb('app.js')} KiB, app.css ${kb('app.css')} KiB`);
