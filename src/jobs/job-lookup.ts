import { NotFoundException, ServiceUnavailableException } from '@nestjs/common';
import type { JobLog, JobMeta } from './job-log';

/**
 * The job's meta if it exists and belongs to the principal `owner`; a job of someone else
 * is as unknown as one that never existed (404), so ids cannot be probed.
 */
export async function findOwnedJob(log: JobLog, id: string, owner: string): Promise<JobMeta> {
  let meta: JobMeta | undefined;
  try {
    meta =
      typeof id === 'string' && /^[A-Za-z0-9_-]{22}$/.test(id) ? await log.meta(id) : undefined;
  } catch (error) {
    throw new ServiceUnavailableException(
      `The job log is unavailable: ${(error as Error).message}`,
    );
  }
  if (!meta || meta.owner !== owner) {
    throw new NotFoundException({
      type: 'urn:nestjs-durable-sse:job:not-found',
      title: 'No such job (unknown, expired, or not yours)',
      status: 404,
    });
  }
  return meta;
}
