-- nestjs-durable-sse outbox schema (PostgreSQL 14+).
-- Generated from src/outbox/store/outbox.sql.ts; a test keeps docs/outbox-schema.sql equal to it.
-- Names: schema public, table sse_outbox, channel sse_outbox; wakeup after-commit.

CREATE SCHEMA IF NOT EXISTS "public";

CREATE TABLE IF NOT EXISTS "public"."sse_outbox" (
  id bigint GENERATED ALWAYS AS IDENTITY,
  tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  topic text NOT NULL,
  type text,
  payload jsonb NOT NULL,
  dedupe_key text,
  created_at timestamptz NOT NULL DEFAULT now(),
  trace_context text,
  PRIMARY KEY (tx_id, id)
);

ALTER TABLE "public"."sse_outbox" ADD COLUMN IF NOT EXISTS trace_context text;

CREATE INDEX IF NOT EXISTS "sse_outbox_topic_position" ON "public"."sse_outbox" (topic, tx_id, id);

CREATE UNIQUE INDEX IF NOT EXISTS "sse_outbox_dedupe" ON "public"."sse_outbox" (topic, dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS "public"."sse_outbox_meta" (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  deleted_through_tx xid8 NOT NULL DEFAULT '0',
  deleted_through_id bigint NOT NULL DEFAULT 0
);

INSERT INTO "public"."sse_outbox_meta" (singleton) VALUES (true) ON CONFLICT DO NOTHING;

DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger
  WHERE tgrelid = to_regclass('"public"."sse_outbox"') AND tgname = 'sse_outbox_notify') THEN
  DROP TRIGGER "sse_outbox_notify" ON "public"."sse_outbox";
  END IF;
  END $$;

CREATE TABLE IF NOT EXISTS "public"."sse_outbox_effects" (
  scope text NOT NULL,
  key text NOT NULL,
  seq integer NOT NULL,
  fingerprint text NOT NULL,
  result text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (scope, key, seq)
);
