/** Jest: TypeScript through SWC (decorators + metadata for NestJS). */
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
    },
    module: { type: 'commonjs' },
  },
];
/**
 * aedes 1.x ships as ES modules only. Node (>= 20.19) `require`s it, but Jest's own module
 * system cannot, so Jest compiles it (and only it) to CommonJS with the same SWC.
 */
const swcEsm = [
  '@swc/jest',
  { jsc: { parser: { syntax: 'ecmascript', importAttributes: true }, target: 'es2022' }, module: { type: 'commonjs' } },
];
const common = {
  transform: { '^.+\\.ts$': swc, '/node_modules/aedes/.+\\.js$': swcEsm },
  transformIgnorePatterns: ['/node_modules/(?!aedes/)'],
  testEnvironment: 'node',
};
module.exports = {
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/domain/**/*.spec.ts', '<rootDir>/test/unit/**/*.spec.ts'],
    },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/integration/**/*.spec.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.spec.ts'] },
    { ...common, displayName: 'reliability', testMatch: ['<rootDir>/test/reliability/**/*.spec.ts'] },
  ],
  testTimeout: 120000,
};
