import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { AlwaysOffSampler, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

/**
 * Registers an OpenTelemetry SDK as an app would (context manager, W3C propagator, provider).
 * `sampling-off`: its sampler records nothing, so what is measured is what tracing costs an app
 * that has the SDK but does not sample (span objects, context propagation, the stored context).
 */
export function registerTracing(setting: string): void {
  if (setting !== 'sampling-off') throw new Error(`BENCH_OTEL: unknown setting ${setting}`);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ sampler: new AlwaysOffSampler() }));
}
