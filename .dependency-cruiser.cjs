// Dependencies point one way: domain ← projections ← src/platform ← src/<context> ← src/app.
// `npm run check:deps` (and so `npm test`) fails when an import goes against that order.
// src/config.ts is a leaf every layer of src/ may read; src/app.ts, main.ts, cli.ts, contexts.ts
// and read-models.ts are the composition root that wires the contexts together.
const CONTEXTS = '^src/(identity|sales|telemetry)/';
const APP = '^src/(app|main|cli|contexts|read-models)\\.ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'domain-is-pure',
      comment: 'domain/ is the innermost layer: it imports only domain/.',
      severity: 'error',
      from: { path: '^domain/' },
      to: { path: '^(projections|src|test|bench)/' },
    },
    {
      name: 'projections-below-platform',
      comment: 'projections/ may import domain/ only; the runtime that runs them lives in src/platform.',
      severity: 'error',
      from: { path: '^projections/' },
      to: { path: '^(src|test|bench)/' },
    },
    {
      name: 'platform-below-contexts',
      comment: 'src/platform is shared by every context, so it must not know any of them nor the app.',
      severity: 'error',
      from: { path: '^src/platform/' },
      to: { path: [CONTEXTS, APP] },
    },
    {
      name: 'contexts-below-app',
      comment: 'A context must not import the composition root that wires it.',
      severity: 'error',
      from: { path: CONTEXTS },
      to: { path: APP },
    },
    {
      name: 'config-is-a-leaf',
      comment: 'src/config.ts is read by every layer of src/, so it imports no project file.',
      severity: 'error',
      from: { path: '^src/config\\.ts$' },
      to: { path: '^(src|projections|domain)/' },
    },
    {
      name: 'no-test-code-in-product',
      severity: 'error',
      from: { path: '^(src|domain|projections)/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules|\\.data)/' },
  },
};
