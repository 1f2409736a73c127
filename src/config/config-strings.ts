import { OPTION_DEFINITIONS, OptionDefinitions } from './option-definitions';
/** As SseConfigIssue (validate-options.ts imports this file). */
interface SseConfigIssue {
  path: string;
  message: string;
}

const INTEGER = /^\s*[+-]?\d+\s*$/;
const BOOLEAN = /^\s*(true|false)\s*$/i;

/**
 * Environment variables reach options as strings (`ConfigService.get()`, `process.env`), so, as
 * `pg` and TypeORM do, a string that spells an integer is taken for an integer option ("500",
 * " 500 ") and "true"/"false" for a boolean one. Anything else in a string stays an error, one
 * line per field that names the conversion (class-validator's own would be two or three lines
 * per field about ranges the value never reached).
 *
 * Returns a copy: groups are copied shallowly, so instances given as options (a pool, a client)
 * are the caller's own objects still.
 */
export function coerceConfigStrings(
  raw: Record<string, unknown>,
  issues: SseConfigIssue[],
  definitions: OptionDefinitions = OPTION_DEFINITIONS,
  prefix = '',
): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...raw };
  for (const [key, definition] of Object.entries(definitions)) {
    const value = copy[key];
    const path = prefix + key;
    if ('group' in definition) {
      if (isPlainGroup(value))
        copy[key] = coerceConfigStrings(value, issues, definition.group, `${path}.`);
      continue;
    }
    if (typeof value !== 'string') continue;
    const { kind } = definition.rule;
    if (kind === 'int') {
      if (INTEGER.test(value)) copy[key] = Number(value);
      else issues.push({ path, message: stringIssue(value, 'an integer', 'Number(…)') });
    } else if (kind === 'boolean') {
      if (BOOLEAN.test(value)) copy[key] = value.trim().toLowerCase() === 'true';
      else issues.push({ path, message: stringIssue(value, 'a boolean', "… === 'true'") });
    }
  }
  return copy;
}

function stringIssue(value: string, wanted: string, conversion: string): string {
  return (
    `must be ${wanted}; got the string ${JSON.stringify(value)}, which does not spell one ` +
    `(configuration read from the environment arrives as strings: convert it, e.g. ${conversion})`
  );
}

function isPlainGroup(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
