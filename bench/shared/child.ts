import { ChildProcess, fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Starts a benchmark child (IPC) and resolves with its first message (its `ready`). */
export function spawnChild(
  file: string,
  args: string[],
  execArgv: string[] = [],
): Promise<{ child: ChildProcess; ready: any }> {
  const child = fork(file, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (ready) => resolve({ child, ready }));
    child.once('exit', (code) => reject(new Error(`${path.basename(file)} exited with ${code}`)));
  });
}

/** Sends `message` and resolves with the child's first message whose `cmd` is `reply`. */
export function ask(child: ChildProcess, message: object, reply: string): Promise<any> {
  return new Promise((resolve) => {
    const onMessage = (m: any) => {
      if (m.cmd === reply) {
        child.off('message', onMessage);
        resolve(m);
      }
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

/** Asks a child to exit and waits until it has. */
export async function stopChild(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.send({ cmd: 'exit' });
  await exited;
}

/** `--name value` from argv, as a number. */
export function numericOption(name: string, fallback: number): number {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** `--name a,b,c` from argv, as a list (`fallback` when absent; empty items dropped). */
export function listOption(name: string, fallback: string): string[] {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  return (i >= 0 ? args[i + 1] : fallback).split(',').filter(Boolean);
}

/** `--<name> <value>` from the command line, one of `allowed` (the first is the default). */
export function choiceOption<T extends string>(name: string, allowed: readonly T[]): T {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  if (i < 0) return allowed[0];
  const value = args[i + 1] as T;
  if (!allowed.includes(value))
    throw new Error(`--${name} must be one of ${allowed.join(', ')}, not ${value}`);
  return value;
}

/** Writes bench/results/<name>.json (from the compiled .tmp/build/bench/<name>/) and prints it. */
export function writeReport(name: string, report: object): void {
  const out = path.resolve(__dirname, '../../../../bench/results', `${name}.json`);
  fs.writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(JSON.stringify(report));
  console.log(`written to ${path.relative(process.cwd(), out)}`);
}
