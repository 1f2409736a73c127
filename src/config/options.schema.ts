import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  MinLength,
  ValidateIf,
  ValidateNested,
} from 'class-validator';
import { OPTION_DEFINITIONS, OptionDefinitions, OptionRule } from './option-definitions';

/**
 * The class-validator schema of the options, derived from option-definitions.ts: one class per
 * group, its properties decorated as the definitions' rules say (instances and functions, rule
 * `value`, are checked in validate-options.ts instead: class-transformer would copy them).
 */
function decoratorsFor(rule: OptionRule): PropertyDecorator[] | undefined {
  switch (rule.kind) {
    case 'int':
      return [
        IsOptional(),
        IsInt(),
        ...(rule.min !== undefined ? [Min(rule.min)] : []),
        ...(rule.max !== undefined ? [Max(rule.max)] : []),
      ];
    case 'boolean':
      return [IsOptional(), IsBoolean()];
    case 'enum':
      return [IsOptional(), IsIn([...rule.values])];
    case 'string':
      return [
        IsOptional(),
        IsString(),
        ...(rule.minLength !== undefined ? [MinLength(rule.minLength)] : []),
        ...(rule.pattern ? [Matches(rule.pattern, { message: rule.message })] : []),
      ];
    case 'path-or-false':
      return [
        IsOptional(),
        ValidateIf((_, value) => value !== false),
        IsString(),
        Matches(/^[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/, {
          message: '$property must be a URL path without leading slash (or false)',
        }),
      ];
    case 'strings':
      return [IsOptional(), IsArray(), ArrayMaxSize(rule.maxItems), IsString({ each: true })];
    case 'value':
      return undefined;
  }
}

function schemaOf(name: string, definitions: OptionDefinitions): new () => object {
  const Schema = { [name]: class {} }[name];
  for (const [key, definition] of Object.entries(definitions)) {
    let decorators: PropertyDecorator[] | undefined;
    if ('group' in definition) {
      const nested = schemaOf(`${name}_${key}`, definition.group);
      decorators = [IsOptional(), IsObject(), ValidateNested(), Type(() => nested)];
    } else {
      decorators = decoratorsFor(definition.rule);
    }
    // As TypeScript applies a property's decorators: the last written first.
    for (const decorate of [...(decorators ?? [])].reverse()) decorate(Schema.prototype, key);
  }
  return Schema;
}

/** The schema of `SseModule.forRoot()`'s options. */
export const SseModuleOptionsSchema = schemaOf('SseModuleOptions', OPTION_DEFINITIONS);
