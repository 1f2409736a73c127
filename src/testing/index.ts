/**
 * `nestjs-durable-sse/testing`: for testing your own code that uses the module (docs/testing.md).
 */
export { SseTestingModule } from './sse-testing.module';
export { SseTestClient } from './sse-test-client';
export type { SseTestEvent, SseTestClientOptions } from './sse-test-client';
export { describeIdempotencyStoreContract } from './idempotency-store-contract';
export type { IdempotencyStoreHarness, ContractTestApi } from './idempotency-store-contract';
export { MemoryIdempotencyStore } from '../idempotency/memory-idempotency-store';
