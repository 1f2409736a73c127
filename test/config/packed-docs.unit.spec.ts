// The docs ship in the package (package.json "files"): every relative link in them must resolve
// inside what is packed — a link to examples/ or bench/ works in the repository and is a 404 on
// the registry and in node_modules — and every #anchor must name a heading of its page.
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(__dirname, '../..');
const packed: string[] = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).files;
const docs = fs
  .readdirSync(path.join(root, 'docs'))
  .filter((file) => file.endsWith('.md'))
  .map((file) => path.join(root, 'docs', file));

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(file: string): Set<string> {
  const found = new Set<string>();
  const counts = new Map<string, number>();
  let fenced = false;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = !fenced && /^#{1,6} (.*)$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const seen = counts.get(slug) ?? 0;
    counts.set(slug, seen + 1);
    found.add(seen === 0 ? slug : `${slug}-${seen}`);
  }
  return found;
}

/** Relative link targets of a markdown file (code blocks and inline code skipped). */
function links(file: string): string[] {
  const text = fs
    .readFileSync(file, 'utf8')
    .replace(/```[\s\S]*?```/g, '')
    .replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1])
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

describe('the packed docs', () => {
  it.each(docs.map((file) => [path.relative(root, file), file]))(
    '%s: relative links resolve inside the package, anchors to headings',
    (_name, file) => {
      const broken: string[] = [];
      for (const target of links(file)) {
        const [pathPart, anchor] = target.split('#');
        const resolved = pathPart ? path.resolve(path.dirname(file), pathPart) : file;
        const inPackage = packed.some((entry) => {
          const relative = path.relative(path.join(root, entry), resolved);
          return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
        });
        if (!inPackage || !fs.existsSync(resolved)) broken.push(`${target} (not in the package)`);
        else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor))
          broken.push(`${target} (no such heading)`);
      }
      expect(broken).toEqual([]);
    },
  );
});
