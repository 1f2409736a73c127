'use strict';
// npm run bench -- <name> [options]: compiles src + bench, then runs bench/<name>/main.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const [name, ...rest] = process.argv.slice(2);
const available = fs
  .readdirSync(__dirname)
  .filter((d) => fs.existsSync(path.join(__dirname, d, 'main.ts')));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [options]`);
  process.exit(2);
}
// What the benchmarks compare against lives in bench/tools, outside the package's dependencies.
// @node-idempotency/nestjs declares NestJS 9/10 peers; it runs on the package's NestJS 11.
const tools = path.join(__dirname, 'tools');
if (!fs.existsSync(path.join(tools, 'node_modules'))) {
  execFileSync(
    'npm',
    ['install', '--no-audit', '--no-fund', '--legacy-peer-deps', '--loglevel=error'],
    {
      cwd: tools,
      stdio: 'inherit',
    },
  );
}
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.dev.json'], {
  cwd: root,
  stdio: 'inherit',
});
// --expose-gc: benchmarks that report heap figures collect first (globalThis.gc), when they can.
const result = spawnSync(
  process.execPath,
  ['--expose-gc', path.join(root, '.tmp/build/bench', name, 'main.js'), ...rest],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
