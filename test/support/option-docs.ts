import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import {
  OPTION_DEFINITIONS,
  OptionDefinition,
  OptionDefinitions,
  OptionRule,
} from '../../src/config/option-definitions';

/**
 * docs/configuration.md's option tables, derived from src/config/option-definitions.ts: rule and
 * default from the definitions, meaning from each entry's JSDoc comment (read with the
 * TypeScript compiler, as editors read it).
 */
const SOURCE = path.join(__dirname, '../../src/config/option-definitions.ts');

/** `group.option` (and `postgres.pool.max`) → its JSDoc text, on one line. */
export function optionComments(): Map<string, string> {
  const file = ts.createSourceFile(
    SOURCE,
    fs.readFileSync(SOURCE, 'utf8'),
    ts.ScriptTarget.Latest,
    true,
  );
  const comments = new Map<string, string>();
  const walk = (node: ts.Node, prefix: string) => {
    let literal: ts.Node = node;
    if (ts.isAsExpression(literal)) literal = literal.expression;
    if (ts.isCallExpression(literal)) literal = literal.arguments[literal.arguments.length - 1];
    if (!ts.isObjectLiteralExpression(literal)) return;
    for (const property of literal.properties) {
      if (!ts.isPropertyAssignment(property)) continue;
      const name = `${prefix}${property.name.getText(file)}`;
      const text = ts
        .getJSDocCommentsAndTags(property)
        .filter(ts.isJSDoc)
        .map((doc) => ts.getTextOfJSDocComment(doc.comment) ?? '')
        .join(' ')
        .replace(/\s*\n\s*/g, ' ')
        .trim();
      if (text) comments.set(name, text);
      const initializer = property.initializer;
      if (ts.isCallExpression(initializer) && initializer.expression.getText(file) === 'group')
        walk(initializer, `${name}.`);
    }
  };
  file.forEachChild((statement) => {
    if (!ts.isVariableStatement(statement)) return;
    for (const declaration of statement.declarationList.declarations) {
      if (declaration.name.getText(file) === 'OPTION_DEFINITIONS' && declaration.initializer)
        walk(declaration.initializer, '');
    }
  });
  return comments;
}

const number = (n: number) => n.toLocaleString('en-US');

function ruleText(definition: OptionDefinition): string {
  if (definition.ruleText) return definition.ruleText;
  const rule: OptionRule = definition.rule;
  switch (rule.kind) {
    case 'int':
      if (rule.min !== undefined && rule.max !== undefined)
        return `integer, ${number(rule.min)} … ${number(rule.max)}`;
      return rule.min !== undefined ? `integer ≥ ${number(rule.min)}` : 'integer';
    case 'boolean':
      return 'boolean';
    case 'enum':
      return rule.values.map((v) => `\`'${v}'\``).join(' or ');
    case 'path-or-false':
      return 'URL path without leading slash, or `false`';
    case 'strings':
      return `up to ${rule.maxItems} strings`;
    default:
      throw new Error(`${rule.kind} option without ruleText`);
  }
}

function defaultText(definition: OptionDefinition): string {
  if (definition.defaultText) return definition.defaultText;
  const value = definition.default;
  if (value === undefined) return '—';
  if (typeof value === 'string') return `\`'${value}'\``;
  return `\`${JSON.stringify(value)}\``;
}

/** The rows of one group's table: [option, default, rule, meaning] (nested groups flattened). */
export function optionRows(group: keyof typeof OPTION_DEFINITIONS): string[][] {
  const comments = optionComments();
  const rows: string[][] = [];
  const add = (definitions: OptionDefinitions, prefix: string) => {
    for (const [key, definition] of Object.entries(definitions)) {
      const name = `${prefix}${key}`;
      if ('group' in definition) {
        add(definition.group, `${name}.`);
        continue;
      }
      const meaning = comments.get(`${group}.${name}`);
      if (!meaning) throw new Error(`option ${group}.${name} has no JSDoc comment`);
      rows.push([`\`${name}\``, defaultText(definition), ruleText(definition), meaning]);
    }
  };
  add(OPTION_DEFINITIONS[group].group, '');
  return rows;
}

/** The table of one group, as markdown (unpadded; Prettier pads it). */
export function optionTable(group: keyof typeof OPTION_DEFINITIONS): string {
  const lines = [
    '| option | default | rule | meaning |',
    '| --- | --- | --- | --- |',
    ...optionRows(group).map((cells) => `| ${cells.join(' | ')} |`),
  ];
  return lines.join('\n');
}
