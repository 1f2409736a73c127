/**
 * The Redis side of idempotency: one HASH per record (`state`, `fp`, `owner`, `response`), every
 * transition one atomic script that sets its own expiry. `running` records live for the lease
 * (renewed while the handler runs); `done` records for the retention TTL. Each script touches
 * one key, so it always runs on one Redis Cluster slot.
 */

/**
 * KEYS[1] record; ARGV fingerprint, owner, leaseMs.
 * → {'acquired'} | {'mismatch'} | {'running', pttl} | {'done', response}
 * Mismatch is checked first, so a different request with a used key is a 422 even while the first
 * is still running.
 */
export const ACQUIRE_SCRIPT = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'acquired'}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then
  return {'mismatch'}
end
if state == 'running' then
  return {'running', redis.call('PTTL', KEYS[1])}
end
return {'done', redis.call('HGET', KEYS[1], 'response')}
`;

/** KEYS[1] record; ARGV owner, response, ttlMs. → 1 stored, 0 not the owner (lease lost). */
export const COMPLETE_SCRIPT = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** KEYS[1] record; ARGV owner. → 1 released, 0 not the owner. */
export const RELEASE_SCRIPT = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
return redis.call('DEL', KEYS[1])
`;

/** KEYS[1] record; ARGV owner, leaseMs. → 1 renewed, 0 not the owner. */
export const EXTEND_SCRIPT = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;
