#!/usr/bin/env bash
# Instructions per request in the idempotency benchmark server, counted by callgrind (exact and
# repeatable within ~2 %, unlike req/s on a shared machine). Compile first (npm run bench --
# idempotency does, or: npx tsc -p tsconfig.dev.json).
#
#   bench/idempotency/callgrind.sh plain none | durable fresh | durable fixed | competitor fresh
#   bench/idempotency/callgrind.sh all     # the bare route, first-time and replay, and their ratios
#   PLATFORM=fastify bench/idempotency/callgrind.sh all   # the same on Nest's Fastify adapter
#
# Starts the server under valgrind, sends 1,500 requests (warm-up), zeroes the counters, sends
# 2,000 more (10 at a time, keep-alive), dumps, and prints the server's instructions per request.
set -euo pipefail
if [ "${1:-}" = all ]; then
  # Instruction counts do not depend on load, so two runs may share the cores.
  out=$(mktemp -d)
  bash "$0" plain none > "$out/plain" &
  bash "$0" durable fresh > "$out/fresh"
  wait $!
  bash "$0" durable fixed > "$out/fixed"
  cat "$out/plain" "$out/fresh" "$out/fixed"
  awk '{ n[FNR == 1 ? ++i : i] = $3 } END {
    printf "requests per instruction vs the bare route: first-time x%.2f, replay x%.2f\n", n[1] / n[2], n[1] / n[3] }' \
    "$out/plain" "$out/fresh" "$out/fixed"
  rm -rf "$out"
  exit 0
fi
MODE=${1:-durable}
KEYS=${2:-fresh}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d)
trap 'kill "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true; rm -rf "$OUT"' EXIT
cat > "$OUT/server.js" <<JS
process.send = (m) => { if (m.cmd === 'ready') require('fs').writeFileSync('$OUT/port', String(m.port)); };
process.argv.push('$MODE', process.env.REDIS_URL || 'redis://127.0.0.1:6379', 'callgrind-$$:', process.env.PLATFORM || 'express');
require('$ROOT/.tmp/build/bench/idempotency/server.js');
JS
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" node "$OUT/server.js" > "$OUT/log" 2>&1 &
VPID=$!
until [ -s "$OUT/port" ]; do kill -0 "$VPID" || { cat "$OUT/log"; exit 1; }; sleep 0.5; done
PORT=$(cat "$OUT/port") KEYS=$KEYS VPID=$VPID node -e '
const { randomUUID } = require("crypto");
const { execSync } = require("child_process");
const http = require("http");
const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
const body = JSON.stringify({ item: "book", quantity: 1 });
const fixed = randomUUID();
const key = () => (process.env.KEYS === "fresh" ? randomUUID() : process.env.KEYS === "fixed" ? fixed : undefined);
const one = (k) => new Promise((resolve, reject) => {
  const headers = { "content-type": "application/json", ...(k ? { "idempotency-key": k } : {}) };
  const request = http.request({ host: "127.0.0.1", port: Number(process.env.PORT), path: "/orders", method: "POST", agent, headers }, (r) => { r.resume(); r.on("end", resolve); });
  request.on("error", reject);
  request.end(body);
});
const run = async (n) => { let i = 0; await Promise.all(Array.from({ length: 10 }, async () => { while (i++ < n) await one(key()); })); };
(async () => {
  await run(1500);
  execSync(`callgrind_control -z ${process.env.VPID}`, { stdio: "ignore" });
  await run(2000);
  execSync(`callgrind_control -d ${process.env.VPID}`, { stdio: "ignore" });
})();
'
DUMP=$(ls "$OUT"/cg.*.* | sort -t. -k3 -n | tail -1)
IR=$(awk '/^(summary|totals):/ { print $2; exit }' "$DUMP")
echo "$MODE $KEYS: $((IR / 2000)) instructions per request (server)"
redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" --scan --pattern "callgrind-$$:*" | xargs -r redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" del > /dev/null || true
