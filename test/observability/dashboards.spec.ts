import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApp } from '../support/http';
import { dropOutbox, outboxOptions } from '../support/outbox';
import { uniqueSchema } from '../support/postgres';
import { redisUrl, uniquePrefix } from '../support/redis';

const docs = join(__dirname, '..', '..', 'docs');
const RULES = join(docs, 'prometheus-rules.yml');
const dashboard = JSON.parse(readFileSync(join(docs, 'grafana-dashboard.json'), 'utf8'));
const rules = readFileSync(RULES, 'utf8');

/** Debian's `prometheus` package; `.ci/run` installs it when missing. */
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
function promtool(...args: string[]): string {
  if (!PROMTOOL) {
    throw new Error(
      "promtool not found: install Debian's prometheus package (apt-get install -y prometheus; " +
        '.ci/run does this). This test fails rather than pass without it.',
    );
  }
  return execFileSync(PROMTOOL, args, { encoding: 'utf8' });
}

const metricNames = (promql: string) =>
  [...promql.matchAll(/\bsse_[a-z0-9_]+\b/g)].map((m) => m[0]);

/**
 * docs/grafana-dashboard.json and docs/prometheus-rules.yml against what the module really
 * exposes: every metric they query is one an app with PostgreSQL and Redis serves at /metrics,
 * the rules pass promtool, and two alerts fire (and stay quiet) as promtool evaluates them.
 */
describe('the Grafana dashboard and the Prometheus rules in docs/', () => {
  let served: Set<string>;

  beforeAll(async () => {
    const schema = uniqueSchema('dash');
    const t = await startApp([], {
      ...outboxOptions(schema),
      redis: { url: redisUrl(), keyPrefix: uniquePrefix('dash') },
      metrics: { path: 'metrics' },
    });
    try {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      served = new Set();
      for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        served.add(name);
        if (type === 'histogram')
          ['_bucket', '_sum', '_count'].forEach((s) => served.add(name + s));
      }
    } finally {
      await t.close();
      await dropOutbox(schema);
    }
  });

  it('queries only metrics the module serves, in every panel', () => {
    const exprs: string[] = dashboard.panels.flatMap((panel: any) => {
      expect(panel.targets.length).toBeGreaterThan(0);
      expect(panel.datasource.uid).toBe('${datasource}');
      return panel.targets.map((target: { expr: string }) => target.expr);
    });
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    const unknown = exprs.flatMap(metricNames).filter((name) => !served.has(name));
    expect(unknown).toEqual([]);
  });

  it('has rules that promtool accepts, each with a runbook line, on metrics the module serves', () => {
    const alerts = [...rules.matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1]);
    expect(alerts).toEqual([
      'SseRelayBehind',
      'SseRelayNotReading',
      'SseOutboxUnmeasured',
      'SseEventsHeldBack',
      'SseSlowConsumerCuts',
      'SseIdempotencyStoreUnavailable',
      'SseStreamCapacityNearLimit',
    ]);
    expect([...rules.matchAll(/^\s+runbook: /gm)]).toHaveLength(alerts.length);
    expect(metricNames(rules).filter((name) => !served.has(name))).toEqual([]);
    expect(promtool('check', 'rules', RULES)).toContain(`SUCCESS: ${alerts.length} rules found`);
  });

  it('fires the capacity and store alerts when their series say so, and not before', () => {
    const dir = mkdtempSync(join(tmpdir(), 'promtool-'));
    const tests = join(dir, 'rules.test.yml');
    writeFileSync(
      tests,
      [
        `rule_files: [${JSON.stringify(RULES)}]`,
        'evaluation_interval: 1m',
        'tests:',
        '  - interval: 1m',
        '    input_series:',
        // 950 of 1,000 streams from minute 0; the other instance at 100.
        '      - series: \'sse_open_connections{instance="a"}\'',
        "        values: '950x30'",
        '      - series: \'sse_max_connections{instance="a"}\'',
        "        values: '1000x30'",
        '      - series: \'sse_open_connections{instance="b"}\'',
        "        values: '100x30'",
        '      - series: \'sse_max_connections{instance="b"}\'',
        "        values: '1000x30'",
        // The store fails from minute 10 on instance a.
        '      - series: \'sse_idempotency_requests_total{instance="a",outcome="error"}\'',
        "        values: '0x10 5+5x20'",
        '    alert_rule_test:',
        '      - eval_time: 5m',
        '        alertname: SseStreamCapacityNearLimit',
        '        exp_alerts: []',
        '      - eval_time: 15m',
        '        alertname: SseStreamCapacityNearLimit',
        '        exp_alerts:',
        '          - exp_labels: { severity: warning, instance: a }',
        '            exp_annotations:',
        '              summary: "a: 95% of sse.maxConnections in use"',
        `              runbook: ${JSON.stringify(runbookOf('SseStreamCapacityNearLimit'))}`,
        '      - eval_time: 9m',
        '        alertname: SseIdempotencyStoreUnavailable',
        '        exp_alerts: []',
        '      - eval_time: 20m',
        '        alertname: SseIdempotencyStoreUnavailable',
        '        exp_alerts:',
        '          - exp_labels: { severity: critical, instance: a }',
        '            exp_annotations:',
        '              summary: "a: the idempotency store fails (0.08 requests/s)"',
        `              runbook: ${JSON.stringify(runbookOf('SseIdempotencyStoreUnavailable'))}`,
      ].join('\n'),
    );
    expect(promtool('test', 'rules', tests)).toContain('SUCCESS');
  });
});

function runbookOf(alert: string): string {
  const from = rules.indexOf(`- alert: ${alert}`);
  const match = /runbook: (["'])(.*)\1$/m.exec(rules.slice(from));
  return match![2];
}
