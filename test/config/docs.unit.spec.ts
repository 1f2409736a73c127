import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as prettier from 'prettier';
import { OPTION_DEFINITIONS } from '../../src/config/option-definitions';
import { optionRows, optionTable } from '../support/option-docs';

const referencePath = join(__dirname, '..', '..', 'docs', 'configuration.md');
const reference = readFileSync(referencePath, 'utf8');
const groups = Object.keys(OPTION_DEFINITIONS) as Array<keyof typeof OPTION_DEFINITIONS>;

/** The `## \`group\`` section of docs/configuration.md, and where its option table is. */
function tableOf(text: string, group: string): { start: number; end: number; rows: string[][] } {
  const heading = text.search(new RegExp(`^## \`${group}\``, 'm'));
  if (heading < 0) throw new Error(`docs/configuration.md has no section for \`${group}\``);
  const start = text.indexOf('\n| option', heading) + 1;
  let end = start;
  while (text.startsWith('|', end)) end = text.indexOf('\n', end) + 1;
  const rows = text
    .slice(start, end)
    .trim()
    .split('\n')
    .slice(2)
    .map((line) => line.split(' | ').map((cell) => cell.replace(/^\|?\s*|\s*\|?$/g, '').trim()));
  return { start, end, rows };
}

describe('docs/configuration.md', () => {
  // UPDATE_DOCS=1 npm run test:jest -- test/config/docs.unit.spec.ts rewrites the tables.
  if (process.env.UPDATE_DOCS) {
    it('is rewritten from src/config/option-definitions.ts', async () => {
      let text = reference;
      for (const group of groups) {
        const { start, end } = tableOf(text, group);
        text = `${text.slice(0, start)}${optionTable(group)}\n${text.slice(end)}`;
      }
      const options = (await prettier.resolveConfig(referencePath)) ?? {};
      writeFileSync(
        referencePath,
        await prettier.format(text, { ...options, filepath: referencePath }),
      );
    });
    return;
  }

  it.each(groups)(
    'has the `%s` table src/config/option-definitions.ts defines (rules, defaults, meanings)',
    (group) => {
      expect(tableOf(reference, group).rows).toEqual(optionRows(group));
    },
  );
});

describe('README.md and docs/ links', () => {
  const root = join(__dirname, '..', '..');
  const pages = [
    'README.md',
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];

  it.each(pages)('%s links only to files that exist', (page) => {
    const text = readFileSync(join(root, page), 'utf8');
    const targets = [...text.matchAll(/\]\(([^)\s]+)\)/g)]
      .map((m) => m[1].split('#')[0])
      .filter((t) => t !== '' && !/^[a-z]+:/.test(t));
    const broken = targets.filter((t) => !existsSync(join(root, dirname(page), t)));
    expect(broken).toEqual([]);
  });
});
