import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import type { SseLogger } from '../observability/sse-logger';
import type { SseConnection } from '../sse/sse-connection';
import { ALIVE_REFRESH_MS, ALIVE_TTL_MS, type JobLog, type LogEntry } from './job-log';
import type { JobFormat } from './job-format';

/** Log entries read at once. */
const READ_COUNT = 500;

/** One client following a job from its log: where it is. */
interface Member {
  connection: SseConnection;
  after: number;
}

/** The followers of one job on this instance, and the one reader they share. */
interface Group {
  id: string;
  format: JobFormat;
  members: Set<Member>;
  timer?: NodeJS.Timeout;
  reading: boolean;
  idleSince: number;
  /** Since when reads have failed, one after another. */
  failingSince?: number;
}

/**
 * Follows jobs that run elsewhere (or have ended) from their logs. The clients of one job on
 * this instance share one reader: every `followIntervalMs` (or at once while there is more) one
 * read from the earliest position among them, each client written what is after its own — so
 * Redis serves one read per job and interval, however many clients watch it (200 followers each
 * polling made ~2,500 commands/s). A runner that is gone (its alive key expired) gets its job
 * ended with `event: error` (`abandoned`) by the first follower that notices, once.
 */
export class JobFollowers {
  private readonly groups = new Map<string, Group>();

  constructor(
    private readonly log: () => JobLog,
    private readonly options: ResolvedSseModuleOptions['jobs'],
    private readonly logger: SseLogger,
  ) {}

  /** Jobs followed on this instance right now. */
  get jobs(): number {
    return this.groups.size;
  }

  /** Writes to `connection` what is in job `id`'s log after `after`, then follows it to its end. */
  follow(id: string, connection: SseConnection, after: number, format: JobFormat): void {
    let group = this.groups.get(id);
    if (!group) {
      group = { id, format, members: new Set(), reading: false, idleSince: Date.now() };
      this.groups.set(id, group);
    }
    const member: Member = { connection, after };
    group.members.add(member);
    const joined = group;
    connection.onTeardown(() => this.leave(joined, member));
    // A newcomer is read for at once, not at the group's next interval.
    this.wake(group);
  }

  private leave(group: Group, member: Member): void {
    group.members.delete(member);
    if (group.members.size > 0 || this.groups.get(group.id) !== group) return;
    clearTimeout(group.timer);
    this.groups.delete(group.id);
  }

  private wake(group: Group): void {
    if (group.reading) return;
    clearTimeout(group.timer);
    group.timer = undefined;
    void this.step(group);
  }

  private schedule(group: Group): void {
    if (group.members.size === 0) return;
    group.timer = setTimeout(() => this.wake(group), this.options.followIntervalMs);
  }

  private async step(group: Group): Promise<void> {
    if (group.members.size === 0) return;
    group.reading = true;
    let more = false;
    try {
      const from = Math.min(...[...group.members].map((member) => member.after));
      const entries = await this.log().read(group.id, from, READ_COUNT);
      group.failingSince = undefined;
      if (entries.length > 0) {
        group.idleSince = Date.now();
        for (const member of [...group.members]) this.write(group, member, entries);
        more = group.members.size > 0;
      } else if (Date.now() - group.idleSince >= ALIVE_REFRESH_MS) {
        group.idleSince = Date.now();
        // A job whose record is gone (Redis restarted empty) would be waited for forever.
        if (!(await this.log().meta(group.id))) this.lost(group, 'its log is gone');
        else {
          // The end's frame but its id line: the script numbers it.
          const tail = group.format.error('abandoned');
          more = await this.log().abandonIfDead(group.id, tail, this.options.retentionMs);
        }
      }
    } catch (error) {
      // A blip (a restart, a failover) is waited out; past the runner's own liveness bound, the
      // clients learn that the job can no longer be followed.
      group.failingSince ??= Date.now();
      if (Date.now() - group.failingSince >= ALIVE_TTL_MS)
        this.lost(group, (error as Error).message);
    } finally {
      group.reading = false;
    }
    if (more) this.wake(group);
    else this.schedule(group);
  }

  /** Writes `member` the entries after its position; ends it at the job's end. */
  private write(group: Group, member: Member, entries: LogEntry[]): void {
    if (member.connection.isClosed) return this.leave(group, member);
    const fresh = entries.filter((entry) => entry.n > member.after);
    if (fresh.length === 0) return;
    // Ids grow by one: a jump means entries are gone (Redis restarted without them).
    if (fresh[0].n !== member.after + 1) {
      this.logger.report(
        'job.follow-failed',
        `Stopped following job ${group.id}: its log lost events ${member.after + 1}..${fresh[0].n - 1}`,
      );
      return this.end(group, member);
    }
    member.connection.write(fresh.map((entry) => entry.frame).join(''));
    member.after = fresh[fresh.length - 1].n;
    if (fresh[fresh.length - 1].end) {
      member.connection.close('complete');
      this.leave(group, member);
    }
  }

  /** Every client of the job is told the log cannot say what happened any more. */
  private lost(group: Group, why: string): void {
    this.logger.report('job.follow-failed', `Stopped following job ${group.id}: ${why}`);
    for (const member of [...group.members]) this.end(group, member);
  }

  /**
   * `event: error` with no id — nothing in any log has or will have that id, and a resume from
   * the client's last id is answered for what the log holds then (404 once it is gone).
   */
  private end(group: Group, member: Member): void {
    member.connection.write(group.format.error('log-unavailable'));
    member.connection.close('complete');
    this.leave(group, member);
  }
}
