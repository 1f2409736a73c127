/** `npm run test:unit`: the specs that need no PostgreSQL or Redis (`*.unit.spec.ts`), with no
 *  servers provisioned. They also run in `npm test`. */
const base = require('./jest.config');

module.exports = {
  ...base,
  testMatch: ['**/*.unit.spec.ts'],
  globalSetup: undefined,
  globalTeardown: undefined,
  // A unit spec that reaches for a server fails here, loudly, instead of finding one by chance.
  setupFiles: ['<rootDir>/test/support/unit-lane.js'],
  reporters: ['default'],
};
