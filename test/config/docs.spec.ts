import { getMetadataStorage } from 'class-validator';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  HealthOptionsSchema,
  IdempotencyOptionsSchema,
  MetricsOptionsSchema,
  OutboxOptionsSchema,
  PostgresOptionsSchema,
  PostgresPoolOptionsSchema,
  RedisOptionsSchema,
  ShutdownOptionsSchema,
  JobsOptionsSchema,
  SseStreamOptionsSchema,
} from '../../src/config/options.schema';

const reference = readFileSync(join(__dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');

/** The options a schema class validates, as class-validator registered them. */
function validated(schema: new () => object): string[] {
  const metadata = getMetadataStorage().getTargetValidationMetadatas(schema, '', true, false);
  return [...new Set(metadata.map((m) => m.propertyName))];
}

/** The `## \`group\`` section of docs/configuration.md. */
function section(group: string): string {
  const start = reference.indexOf(`## \`${group}\``);
  if (start < 0) throw new Error(`docs/configuration.md has no section for \`${group}\``);
  const end = reference.indexOf('\n## ', start + 1);
  return reference.slice(start, end < 0 ? undefined : end);
}

describe('docs/configuration.md', () => {
  const groups: [string, string[]][] = [
    ['sse', validated(SseStreamOptionsSchema)],
    [
      'postgres',
      [
        ...validated(PostgresOptionsSchema).filter((k) => k !== 'pool'),
        ...validated(PostgresPoolOptionsSchema).map((k) => `pool.${k}`),
        // Instances and functions bypass class-validator (they must reach the module untouched).
        'existingPool',
        'listenerClientFactory',
      ],
    ],
    ['outbox', validated(OutboxOptionsSchema)],
    ['redis', [...validated(RedisOptionsSchema), 'existingClient']],
    ['idempotency', validated(IdempotencyOptionsSchema)],
    ['health', validated(HealthOptionsSchema)],
    ['metrics', validated(MetricsOptionsSchema)],
    ['shutdown', validated(ShutdownOptionsSchema)],
    ['jobs', validated(JobsOptionsSchema)],
  ];

  it.each(groups)('documents every `%s` option in its table', (group, options) => {
    expect(options.length).toBeGreaterThan(1);
    const text = section(group);
    const undocumented = options.filter((option) => !text.includes(`| \`${option}\``));
    expect(undocumented).toEqual([]);
  });
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
