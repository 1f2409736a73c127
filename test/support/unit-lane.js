'use strict';
// The unit lane provisions no servers: a spec here that needs one must fail ("DATABASE_URL is
// not set"), not quietly use whatever the developer's environment points at.
delete process.env.DATABASE_URL;
delete process.env.REDIS_URL;
