'use strict';
/**
 * README's "Use it in your app", run for real: packs the package as npm would publish it, then,
 * in two new Nest apps (./nest11 and ./nest12, each with only its own dependencies, copied to a
 * temporary directory outside the repository), installs
 * the tarball with `npm install <tarball>` and runs ./smoke.test.js with node's test runner
 * there: the package loaded as an app loads it, its entry points, its peer dependencies.
 * NestJS 12 is ESM-only and Jest on Node 20 cannot load it; this is where it is checked.
 *
 *   node test/compat/run-compat.js [nest11|nest12 …]
 *
 * COMPAT_TAP_DIR=<dir> also writes <dir>/<app>.tap, for the summary line of `npm test`.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const apps = process.argv.length > 2 ? process.argv.slice(2) : ['nest11', 'nest12'];
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) run(npm, ['run', 'build'], root);
const packDir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-sse-pack-'));
let failed = false;
const appDirs = [];
try {
  const [{ filename }] = JSON.parse(
    // --ignore-scripts: prepack would build again; the build is current (made above or by npm test).
    execFileSync(
      npm,
      ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir, '--loglevel=error'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    ),
  );
  const tarball = path.join(packDir, filename);
  for (const app of apps) {
    // Outside the repository: inside it, Node's resolution would climb to the repository's own
    // node_modules and find what the app never installed (its dev dependencies).
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), `durable-sse-${app}-`));
    appDirs.push(cwd);
    for (const file of ['package.json', 'package-lock.json'])
      fs.copyFileSync(path.join(__dirname, app, file), path.join(cwd, file));
    console.log(`\n${app} (in ${cwd}): npm ci, npm install ${filename}`);
    run(npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], cwd);
    // --no-save: the app's package.json and lock stay as committed; the tarball changes per build.
    run(npm, ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error', tarball], cwd);
    // spec for people, TAP to a file for the summary line of `npm test`.
    const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout'];
    if (process.env.COMPAT_TAP_DIR) {
      reporters.push('--test-reporter=tap');
      reporters.push(
        `--test-reporter-destination=${path.join(process.env.COMPAT_TAP_DIR, `${app}.tap`)}`,
      );
    }
    try {
      run(process.execPath, ['--test', ...reporters, path.join(__dirname, 'smoke.test.js')], cwd);
    } catch {
      failed = true;
    }
  }
} finally {
  for (const dir of [packDir, ...appDirs]) fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
