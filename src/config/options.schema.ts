import { applyDecorators } from '@nestjs/common';
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
import type {
  HealthOptions,
  MetricsOptions,
  IdempotencyFailMode,
  IdempotencyOptions,
  RedisOptions,
  OutboxFanout,
  OutboxOptions,
  PostgresOptions,
  PostgresPoolOptions,
  SseModuleOptions,
  SseRejectMode,
  ShutdownOptions,
  JobsOptions,
  SseStreamOptions,
} from './sse-module-options';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** An optional nested group of options, validated with its own schema class. */
function OptionGroup(schema: () => new () => object): PropertyDecorator {
  return applyDecorators(IsOptional(), IsObject(), ValidateNested(), Type(schema));
}

/** A URL path without leading slash, or `false` for "not mounted". */
function RoutePathOrFalse(): PropertyDecorator {
  return applyDecorators(
    IsOptional(),
    ValidateIf((_, value) => value !== false),
    IsString(),
    Matches(/^[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/, {
      message: '$property must be a URL path without leading slash (or false)',
    }),
  );
}

/** Lower-case SQL identifiers only, so names never need quoting rules beyond double quotes. */
export const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const IDENTIFIER_MESSAGE =
  '$property must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)';

export class SseStreamOptionsSchema implements SseStreamOptions {
  @IsOptional() @IsInt() @Min(10) @Max(HOUR_MS) heartbeatMs?: number;
  @IsOptional() @IsInt() @Min(0) @Max(HOUR_MS) retryMs?: number;
  @IsOptional() @IsInt() @Min(1) maxConnections?: number;
  @IsOptional() @IsInt() @Min(1) maxConnectionsPerClient?: number;
  @IsOptional() @IsInt() @Min(1024) maxBufferedBytes?: number;
  @IsOptional() @IsInt() @Min(10) @Max(HOUR_MS) slowConsumerMs?: number;
  @IsOptional() @IsIn(['status', 'retry']) rejectMode?: SseRejectMode;
  @IsOptional() @IsInt() @Min(1) @Max(HOUR_MS) rejectRetryMs?: number;
  @IsOptional() @IsInt() @Min(1) @Max(1_000_000) replayLimit?: number;
}

export class PostgresPoolOptionsSchema implements PostgresPoolOptions {
  @IsOptional() @IsInt() @Min(1) @Max(10_000) max?: number;
  @IsOptional() @IsInt() @Min(0) @Max(10_000) min?: number;
  @IsOptional() @IsInt() @Min(0) idleTimeoutMs?: number;
  @IsOptional() @IsInt() @Min(1) connectionTimeoutMs?: number;
}

export class PostgresOptionsSchema implements Omit<
  PostgresOptions,
  'existingPool' | 'listenerClientFactory'
> {
  @IsOptional() @IsString() @MinLength(1) connectionString?: string;
  @OptionGroup(() => PostgresPoolOptionsSchema)
  pool?: PostgresPoolOptionsSchema;
  @IsOptional() @IsInt() @Min(0) statementTimeoutMs?: number;
  @IsOptional() @IsInt() @Min(100) @Max(HOUR_MS) queryTimeoutMs?: number;
  @IsOptional() @IsString() @Matches(IDENTIFIER, { message: IDENTIFIER_MESSAGE }) schema?: string;
}

export class OutboxOptionsSchema implements OutboxOptions {
  @IsOptional() @IsString() @Matches(IDENTIFIER, { message: IDENTIFIER_MESSAGE }) table?: string;
  @IsOptional() @IsString() @Matches(IDENTIFIER, { message: IDENTIFIER_MESSAGE }) channel?: string;
  @IsOptional() @IsInt() @Min(10) @Max(HOUR_MS) pollIntervalMs?: number;
  @IsOptional() @IsInt() @Min(1) @Max(100_000) batchSize?: number;
  @IsOptional() @IsInt() @Min(1000) @Max(3650 * DAY_MS) retentionMs?: number;
  @IsOptional() @IsInt() @Min(100) @Max(DAY_MS) retentionIntervalMs?: number;
  @IsOptional() @IsBoolean() migrate?: boolean;
  @IsOptional() @IsInt() @Min(100) @Max(HOUR_MS) listenerCheckMs?: number;
  @IsOptional() @IsInt() @Min(0) @Max(1024 * 1024 * 1024) replayCacheBytes?: number;
  @IsOptional() @IsIn(['postgres', 'redis']) fanout?: OutboxFanout;
  @IsOptional() @IsInt() @Min(100) @Max(100_000_000) streamMaxLength?: number;
  @IsOptional() @IsInt() @Min(100) @Max(60_000) leaderCheckMs?: number;
}

export class RedisOptionsSchema implements Omit<RedisOptions, 'existingClient'> {
  @IsOptional()
  @IsString()
  @Matches(/^rediss?:\/\//, { message: '$property must be a redis:// or rediss:// URL' })
  url?: string;
  @IsOptional() @IsInt() @Min(1) connectTimeoutMs?: number;
  @IsOptional() @IsInt() @Min(1) @Max(HOUR_MS) commandTimeoutMs?: number;
  @IsOptional() @IsInt() @Min(0) @Max(100) maxRetriesPerRequest?: number;
  @IsOptional()
  @IsString()
  @Matches(/^[^\s{}]*$/, { message: '$property must not contain whitespace or braces' })
  keyPrefix?: string;
}

export class IdempotencyOptionsSchema implements IdempotencyOptions {
  @IsOptional()
  @IsString()
  @Matches(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { message: '$property must be an HTTP header name' })
  header?: string;
  @IsOptional() @IsInt() @Min(1) @Max(365 * 86_400) ttlSeconds?: number;
  @IsOptional() @IsInt() @Min(1) @Max(86_400) inFlightTtlSeconds?: number;
  @IsOptional() @IsBoolean() required?: boolean;
  @IsOptional() @IsInt() @Min(1) @Max(8192) keyMaxLength?: number;
  @IsOptional() @IsInt() @Min(1) maxResponseBytes?: number;
  @IsOptional() @IsIn(['closed', 'open']) failMode?: IdempotencyFailMode;
  @IsOptional() @IsArray() @ArrayMaxSize(100) @IsString({ each: true }) storedHeaders?: string[];
  @IsOptional() @IsInt() @Min(0) @Max(3600) retryAfterSeconds?: number;
  @IsOptional() @IsBoolean() allowMemoryStoreInProduction?: boolean;
}

export class HealthOptionsSchema implements HealthOptions {
  @RoutePathOrFalse() path?: string | false;
  @IsOptional() @IsInt() @Min(1) @Max(HOUR_MS) timeoutMs?: number;
  @IsOptional() @IsInt() @Min(1) maxOutboxLagEvents?: number;
  @IsOptional() @IsInt() @Min(1) maxReadAgeMs?: number;
  @IsOptional() @IsInt() @Min(0) @Max(60_000) cacheMs?: number;
  @IsOptional() @IsInt() @Min(1) @Max(DAY_MS) pendingWarnMs?: number;
}

export class JobsOptionsSchema implements JobsOptions {
  @IsOptional() @IsInt() @Min(1) @Max(10_000_000) maxEvents?: number;
  @IsOptional() @IsInt() @Min(1024) @Max(1024 * 1024 * 1024) maxBytes?: number;
  @IsOptional() @IsInt() @Min(1) @Max(1_000_000) maxConcurrent?: number;
  @IsOptional() @IsInt() @Min(1) @Max(1_000_000) maxConcurrentPerClient?: number;
  @IsOptional() @IsInt() @Min(100) @Max(7 * DAY_MS) timeoutMs?: number;
  @IsOptional() @IsInt() @Min(1000) @Max(30 * DAY_MS) retentionMs?: number;
  @IsOptional() @IsInt() @Min(5) @Max(60_000) followIntervalMs?: number;
}

export class ShutdownOptionsSchema implements ShutdownOptions {
  @IsOptional() @IsInt() @Min(0) @Max(HOUR_MS) drainMs?: number;
  @IsOptional() @IsInt() @Min(0) @Max(HOUR_MS) graceMs?: number;
}

export class MetricsOptionsSchema implements MetricsOptions {
  @RoutePathOrFalse() path?: string | false;
  @IsOptional()
  @IsString()
  @Matches(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, {
    message: '$property must be a Prometheus metric name prefix',
  })
  prefix?: string;
}

export class SseModuleOptionsSchema implements SseModuleOptions {
  @OptionGroup(() => SseStreamOptionsSchema)
  sse?: SseStreamOptionsSchema;

  @OptionGroup(() => PostgresOptionsSchema)
  postgres?: PostgresOptionsSchema;

  @OptionGroup(() => OutboxOptionsSchema)
  outbox?: OutboxOptionsSchema;

  @OptionGroup(() => RedisOptionsSchema)
  redis?: RedisOptionsSchema;

  @OptionGroup(() => IdempotencyOptionsSchema)
  idempotency?: IdempotencyOptionsSchema;

  @OptionGroup(() => HealthOptionsSchema)
  health?: HealthOptionsSchema;

  @OptionGroup(() => MetricsOptionsSchema)
  metrics?: MetricsOptionsSchema;

  @OptionGroup(() => ShutdownOptionsSchema)
  shutdown?: ShutdownOptionsSchema;
  @OptionGroup(() => JobsOptionsSchema)
  jobs?: JobsOptionsSchema;
}
