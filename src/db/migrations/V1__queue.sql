-- clerk's run queue on PostgreSQL (see src/queue/postgres.rs).
--
-- Hot rows (queued and claimed jobs) live in clerk_jobs; finished jobs (done, dead,
-- dropped) are moved to clerk_jobs_finished in the transaction that finishes them, so a
-- long-held snapshot elsewhere cannot bloat the table every claim scans. A dead job that is
-- retried moves back.
--
-- `job` is the whole job as clerk's `queue::Job` (JSON); the other columns are derived
-- from it on every write and exist for the claim's and the lists' queries.

CREATE TABLE clerk_jobs (
    id           bigint PRIMARY KEY,
    channel      text NOT NULL,
    priority     integer NOT NULL,
    state        text NOT NULL CHECK (state IN ('queued', 'claimed')),
    not_before   timestamptz,
    -- Only this node may claim it (runs whose approvals live in that node's journal).
    pinned       text,
    -- While claimed: the lease, its secret token, its length, and the node holding it.
    token        text,
    worker       text,
    node         text,
    lease_until  timestamptz,
    lease_ms     bigint NOT NULL DEFAULT 0,
    job          jsonb NOT NULL
);

CREATE SEQUENCE clerk_job_ids AS bigint START 1;

-- What a claim scans: runnable jobs by channel, priority then id.
CREATE INDEX clerk_jobs_runnable ON clerk_jobs (channel, priority DESC, id)
    WHERE state = 'queued';
-- Lease expiry and per-node, per-channel counts.
CREATE INDEX clerk_jobs_claimed ON clerk_jobs (lease_until) WHERE state = 'claimed';

CREATE TABLE clerk_jobs_finished (
    id           bigint PRIMARY KEY,
    channel      text NOT NULL,
    state        text NOT NULL CHECK (state IN ('done', 'dead', 'dropped')),
    finished_at  timestamptz NOT NULL,
    job          jsonb NOT NULL
);
CREATE INDEX clerk_jobs_finished_state ON clerk_jobs_finished (state, id);

-- One row per channel that ever started a run: when its last run started (min_interval
-- holds across nodes), and whether an operator paused it.
CREATE TABLE clerk_channels (
    channel      text PRIMARY KEY,
    last_start   timestamptz,
    paused_reason text,
    paused_since timestamptz
);
