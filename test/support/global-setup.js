'use strict';
// Jest global setup: a build as new as the sources (for the specs that run dist/ in a child
// process), then real PostgreSQL and Redis for every worker (workers inherit process.env).
const { ensureFreshBuild } = require('./built-package');
const { ensureServices } = require('./services');

module.exports = async () => {
  ensureFreshBuild();
  globalThis.__durableSseStopServices = await ensureServices();
};
