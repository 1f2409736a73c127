'use strict';
/**
 * A Jest reporter that appends one JSON line per test file as it starts and as it ends, to the
 * file named by its `file` option. `npm test` reads it to print where the time went, also when
 * it had to kill Jest (Jest's own --json output is written only at the very end).
 */
const fs = require('node:fs');
const path = require('node:path');

class TimingReporter {
  constructor(_globalConfig, options = {}) {
    this.file = options.file;
    if (this.file) {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      fs.writeFileSync(this.file, '');
    }
  }

  write(record) {
    if (this.file) fs.appendFileSync(this.file, `${JSON.stringify(record)}\n`);
  }

  onTestFileStart(test) {
    this.write({ event: 'start', file: test.path, at: Date.now() });
  }

  onTestFileResult(test, result) {
    this.write({
      event: 'end',
      file: test.path,
      at: Date.now(),
      ms: result.perfStats.end - result.perfStats.start,
      tests: result.numPassingTests + result.numFailingTests,
      failed: result.numFailingTests + (result.testExecError ? 1 : 0),
    });
  }
}

/**
 * Reads what the reporter wrote: the files that ended, slowest first, and those started but not
 * ended (still running when Jest stopped).
 */
function readTimings(file) {
  const ended = new Map();
  const started = new Map();
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n')) {
    if (!line) continue;
    const record = JSON.parse(line);
    if (record.event === 'start') started.set(record.file, record.at);
    else ended.set(record.file, record);
  }
  const running = [...started]
    .filter(([name]) => !ended.has(name))
    .map(([name, at]) => ({ file: name, ms: Date.now() - at }));
  return { ended: [...ended.values()].sort((a, b) => b.ms - a.ms), running };
}

module.exports = TimingReporter;
module.exports.readTimings = readTimings;
