'use strict';
/**
 * README's "Use it in your app", run for real: packs the package as npm would publish it, then,
 * in new Nest apps (each with only its own dependencies, copied to a temporary directory outside
 * the repository), installs the tarball with `npm install <tarball>` and runs ./smoke.test.js
 * with node's test runner there (the package loaded as an app loads it, its entry points, its
 * peer dependencies), then the app's own `npm run check` if it has one:
 * - ./nest11: NestJS 11, CommonJS.
 * - ./nest12: NestJS 12 as `nest new` makes it: ESM, with a Vitest test that uses
 *   nestjs-durable-sse/testing. NestJS 12 is ESM-only and Jest on Node 20 cannot load it; this
 *   is where it is checked.
 * - ./types: only the required peers; compiles the packed declarations with skipLibCheck: false.
 *
 *   node test/compat/run-compat.js [nest11|nest12|types …]
 *
 * COMPAT_TAP_DIR=<dir> also writes <dir>/<app>.tap, for the summary line of `npm test`.
 */
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const apps = process.argv.length > 2 ? process.argv.slice(2) : ['nest11', 'nest12', 'types'];
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

/** Runs a command, adding what it prints to `output`; resolves with whether it exited 0. */
function runInto(output, cmd, args, cwd, timeoutMs = 240_000) {
  output.push(`$ ${path.basename(cmd)} ${args.join(' ')}\n`);
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    // A failed assertion can leave an app's sockets open and the process waiting on them.
    const timer = setTimeout(() => {
      output.push(`killed after ${timeoutMs} ms\n`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk) => output.push(chunk));
    child.stderr.on('data', (chunk) => output.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      output.push(`${error.message}\n`);
      resolve(false);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
  });
}

/**
 * One app, in a temporary directory of its own: npm ci, the tarball, the smoke test. The apps
 * run at the same time (they share nothing but the npm cache); each one's output is printed
 * whole when it ends, so the two never interleave.
 */
async function checkApp(app, tarball, filename) {
  // Outside the repository: inside it, Node's resolution would climb to the repository's own
  // node_modules and find what the app never installed (its dev dependencies).
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), `durable-sse-${app}-`));
  const output = [];
  try {
    // The app's own files: package.json and its lock, and whatever its `check` script runs.
    for (const file of fs.readdirSync(path.join(__dirname, app)))
      if (file !== 'node_modules')
        fs.copyFileSync(path.join(__dirname, app, file), path.join(cwd, file));
    const manifest = JSON.parse(fs.readFileSync(path.join(cwd, 'package.json'), 'utf8'));
    output.push(`\n${app} (in ${cwd}): npm ci, npm install ${filename}\n`);
    let ok = await runInto(output, npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], cwd);
    // --no-save: the app's package.json and lock stay as committed; the tarball changes per build.
    ok &&= await runInto(
      output,
      npm,
      ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error', tarball],
      cwd,
    );
    // spec for people, TAP to a file for the summary line of `npm test`.
    const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout'];
    if (process.env.COMPAT_TAP_DIR) {
      reporters.push('--test-reporter=tap');
      reporters.push(
        `--test-reporter-destination=${path.join(process.env.COMPAT_TAP_DIR, `${app}.tap`)}`,
      );
    }
    if (manifest.compatSmoke !== false) {
      ok &&= await runInto(
        output,
        process.execPath,
        ['--test', '--test-timeout=120000', ...reporters, path.join(__dirname, 'smoke.test.js')],
        cwd,
      );
    }
    // The app's own check, as its developers run it: types (./types), Vitest (./nest12).
    if (manifest.scripts?.check) {
      const checked = ok && (await runInto(output, npm, ['run', 'check'], cwd));
      // One test each, in the summary line of `npm test`.
      if (process.env.COMPAT_TAP_DIR) {
        fs.writeFileSync(
          path.join(process.env.COMPAT_TAP_DIR, `${app}.check`),
          checked ? 'pass' : 'fail',
        );
      }
      ok &&= checked;
    }
    return ok;
  } finally {
    process.stdout.write(
      Buffer.concat(output.map((c) => (Buffer.isBuffer(c) ? c : Buffer.from(c)))),
    );
    fs.rmSync(cwd, { recursive: true, force: true });
  }
}

async function main() {
  if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) run(npm, ['run', 'build'], root);
  const packDir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-sse-pack-'));
  try {
    const [{ filename }] = JSON.parse(
      // --ignore-scripts: prepack would build again; the build is current (made above or by npm test).
      execFileSync(
        npm,
        ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir, '--loglevel=error'],
        { cwd: root, encoding: 'utf8' },
      ),
    );
    const tarball = path.join(packDir, filename);
    const results = await Promise.all(apps.map((app) => checkApp(app, tarball, filename)));
    return results.every(Boolean);
  } finally {
    fs.rmSync(packDir, { recursive: true, force: true });
  }
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
