import { createRequire } from 'node:module';
import * as path from 'node:path';

/**
 * `require` for what the benchmarks compare against and load with (bench/tools/package.json,
 * installed by bench/run.js), which the package itself never depends on. Resolved from the
 * compiled .tmp/build/bench/shared/.
 */
export const toolRequire = createRequire(
  path.resolve(__dirname, '../../../../bench/tools/package.json'),
);
