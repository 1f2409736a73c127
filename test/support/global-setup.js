'use strict';
// Jest global setup: real PostgreSQL and Redis for every worker (workers inherit process.env).
const { ensureServices } = require('./services');

module.exports = async () => {
  globalThis.__durableSseStopServices = await ensureServices();
};
