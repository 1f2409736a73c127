/** Jest runs the TypeScript sources against the NestJS 11 dev-dependencies (CommonJS).
 *  NestJS 12 is ESM-only; it is covered by test/compat (plain node loading dist/).
 *
 *  Every suite isolates itself (a schema, a Redis key prefix, private servers on free ports of
 *  its own), so files run in parallel workers. Much of a file's time is spent waiting on servers,
 *  sockets and timers, so the 2-core machine takes more workers than cores: 3 measured best
 *  (2: slower; 4: no faster, the CPU already busy). JEST_WORKERS overrides it. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.spec.ts'],
  // tsconfig.json's isolatedModules makes ts-jest transpile each file alone, without
  // type-checking: that is the build's job (`npm run build` runs first in `npm test`).
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  globalSetup: '<rootDir>/test/support/global-setup.js',
  globalTeardown: '<rootDir>/test/support/global-teardown.js',
  maxWorkers: Number(process.env.JEST_WORKERS) || 3,
  reporters: [
    'default',
    ['<rootDir>/test/support/timing-reporter.js', { file: process.env.JEST_TIMINGS_FILE }],
  ],
  testTimeout: 30000,
};
