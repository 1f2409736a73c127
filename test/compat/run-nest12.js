'use strict';
/**
 * NestJS 12 is ESM-only and Jest on Node 20 cannot load it, so the suite runs under Jest against
 * Nest 11 and this script checks the *built package* under Nest 12 with plain node: it packs
 * the package as npm would publish it, unpacks it into ./nest12/node_modules (next to Nest 12),
 * and runs nest12/smoke.test.js with node's test runner.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const compat = path.join(__dirname, 'nest12');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) run(npm, ['run', 'build'], root);
run(npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], compat);

const packDir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-sse-pack-'));
try {
  const packed = JSON.parse(
    execFileSync(npm, ['pack', '--json', '--pack-destination', packDir, '--loglevel=error'], {
      cwd: root,
      encoding: 'utf8',
    }),
  );
  const target = path.join(compat, 'node_modules', 'nestjs-durable-sse');
  fs.rmSync(target, { recursive: true, force: true });
  fs.mkdirSync(target, { recursive: true });
  run(
    'tar',
    ['-xzf', path.join(packDir, packed[0].filename), '-C', target, '--strip-components=1'],
    compat,
  );
} finally {
  fs.rmSync(packDir, { recursive: true, force: true });
}
// spec for people, TAP to a file for the summary line of `npm test`.
const tapFile = process.env.NEST12_TAP_FILE;
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout'];
if (tapFile) reporters.push('--test-reporter=tap', `--test-reporter-destination=${tapFile}`);
run(process.execPath, ['--test', ...reporters, 'smoke.test.js'], compat);
