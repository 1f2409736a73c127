import * as fs from 'node:fs';
import * as path from 'node:path';
import { OPTION_DEFINITIONS, OptionsOf } from '../../src/config/option-definitions';
import type {
  PostgresOptions,
  SseModuleOptions,
  SseStreamOptions,
} from '../../src/config/sse-module-options';

const root = path.join(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');

/** Names an entry point exports (values and types), read from its source. */
function exported(file: string): string[] {
  const names: string[] = [];
  const source = read(file);
  for (const match of source.matchAll(/export (?:type )?\{([^}]*)\}/g)) {
    for (const name of match[1].split(',')) if (name.trim()) names.push(name.trim());
  }
  for (const match of source.matchAll(
    /export (?:async )?(?:function|class|const|interface|type) (\w+)/g,
  ))
    names.push(match[1]);
  return names.sort();
}

/** Names docs/api.md lists under `## \`<entry>\``: every backticked identifier of its bullets. */
function documented(entry: string): string[] {
  const doc = read('docs/api.md');
  const start = doc.indexOf(`## \`${entry}\`\n`);
  expect(start).toBeGreaterThanOrEqual(0);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const names = new Set<string>();
  for (const line of section.split('\n').filter((l) => l.startsWith('- '))) {
    // The names are what the bullet lists before its dash (or all of it, for types).
    const head = line.startsWith('- types ') ? line : line.split(' — ')[0];
    for (const match of head.matchAll(/`([A-Za-z_]\w*)`/g)) names.add(match[1]);
  }
  return [...names].sort();
}

describe('the public API is what docs/api.md documents', () => {
  it.each([
    ['nestjs-durable-sse', 'src/index.ts'],
    ['nestjs-durable-sse/testing', 'src/testing/index.ts'],
    ['nestjs-durable-sse/pglite', 'src/pglite.ts'],
  ])('%s', (entry, file) => {
    expect(documented(entry)).toEqual(exported(file));
  });

  it('package.json maps each entry point to its build, and nothing else', () => {
    const pkg = JSON.parse(read('package.json'));
    expect(pkg.exports).toEqual({
      '.': { types: './dist/index.d.ts', default: './dist/index.js' },
      './testing': { types: './dist/testing/index.d.ts', default: './dist/testing/index.js' },
      './pglite': { types: './dist/pglite.d.ts', default: './dist/pglite.js' },
      './package.json': './package.json',
    });
    for (const target of ['src/index.ts', 'src/testing/index.ts', 'src/pglite.ts'])
      expect(fs.existsSync(path.join(root, target))).toBe(true);
  });
});

// The option interfaces are written out (so that editors name them); they must stay equal to
// the definitions they stand for (a compile error here otherwise).
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Definitions = typeof OPTION_DEFINITIONS;
type Flat<T> = { [K in keyof T]: T[K] };
const optionTypesMatch: [
  Equal<Flat<SseModuleOptions>, Flat<OptionsOf<Definitions>>>,
  Equal<Flat<SseStreamOptions>, Flat<OptionsOf<Definitions['sse']['group']>>>,
  Equal<
    Flat<Required<PostgresOptions>['pool']>,
    Flat<OptionsOf<Definitions['postgres']['group']['pool']['group']>>
  >,
  Equal<
    Omit<Flat<PostgresOptions>, 'pool'>,
    Omit<Flat<OptionsOf<Definitions['postgres']['group']>>, 'pool'>
  >,
] = [true, true, true, true];

describe('option types', () => {
  it('are the named interfaces, equal to the definitions', () => {
    expect(optionTypesMatch).toEqual([true, true, true, true]);
  });
});
