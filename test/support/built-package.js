'use strict';
/**
 * The built package (dist/), for the tests that run the module in a child process of their own
 * (killed with SIGKILL, crashed after COMMIT, shut down by a signal). Those load dist/, not the
 * TypeScript sources Jest runs, so a build older than the sources would test old code and pass.
 *
 * staleSources(): the src/ files whose build output is missing or older than they are.
 * ensureFreshBuild(): builds when anything is stale (Jest's global setup, so `npm run test:jest`
 * needs no build step of its own; `npm test` has just built, and this finds nothing to do).
 * loadBuiltPackage(): what the children require; refuses a stale build, naming the files.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const src = path.join(root, 'src');
const dist = path.join(root, 'dist');

function sourceFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** The files of `dirs` whose output (under `outDir`, relative to `base`) is missing or older. */
function staleAgainst(dirs, base, outDir) {
  return dirs.flatMap(sourceFiles).filter((file) => {
    const built = path.join(outDir, path.relative(base, file)).replace(/\.ts$/, '.js');
    try {
      return fs.statSync(built).mtimeMs < fs.statSync(file).mtimeMs;
    } catch {
      return true; // never built
    }
  });
}

/** Compiles `project` (a tsconfig) with the project's own TypeScript; throws with its output. */
function tsc(project) {
  const run = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', project], {
    cwd: root,
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`tsc -p ${project} failed:\n${run.stdout}${run.stderr}`);
}

function staleSources() {
  return staleAgainst([src], src, dist);
}

/**
 * What `npm start` and the benchmarks run: src, examples and bench compiled to .tmp/build
 * (tsconfig.dev.json). `npm test` builds it beside the lint step; the spec that runs
 * `npm start`'s output builds it only if that is missing or stale.
 */
function ensureFreshDevBuild() {
  const dirs = ['src', 'examples', 'bench'].map((dir) => path.join(root, dir));
  if (staleAgainst(dirs, root, path.join(root, '.tmp', 'build')).length > 0)
    tsc('tsconfig.dev.json');
}

function describeStale(stale) {
  const names = stale.slice(0, 5).map((file) => path.relative(root, file));
  const more = stale.length > names.length ? ` and ${stale.length - names.length} more` : '';
  return `${names.join(', ')}${more}`;
}

function ensureFreshBuild(log = (line) => process.stderr.write(`${line}\n`)) {
  const stale = staleSources();
  if (stale.length === 0) return;
  log(`[build] dist/ is older than ${describeStale(stale)}: building (npm run build)`);
  tsc('tsconfig.build.json');
  const still = staleSources();
  if (still.length > 0) throw new Error(`the build left dist/ older than ${describeStale(still)}`);
}

function loadBuiltPackage() {
  const stale = staleSources();
  if (stale.length > 0) {
    throw new Error(
      `dist/ is older than ${describeStale(stale)}: this child would run old code. Run \`npm run build\` (npm test builds first).`,
    );
  }
  return require(dist);
}

module.exports = { staleSources, ensureFreshBuild, ensureFreshDevBuild, loadBuiltPackage };
