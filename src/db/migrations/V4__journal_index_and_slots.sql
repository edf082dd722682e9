-- The shared journal's index (src/db/journal.rs): what each record is filed under, derived
-- from its line by the same function as the sled index's keys (evidence::index::keys_of),
-- so `runs list`, `runs show`, `approvals`, the console and the schedule and pause folds
-- read PostgreSQL directly and answer as the embedded mode does.
--
-- A row is inserted in the transaction that appends its record. Records appended before
-- this table existed are indexed by the first node that opens the journal after the
-- migration (under the journal's advisory lock). It is a cache of clerk_journal, which stays
-- append-only: `clerk reindex` on any node rebuilds it.
CREATE TABLE clerk_journal_keys (
    seq            bigint PRIMARY KEY REFERENCES clerk_journal (seq),
    run_id         text,
    approval_id    text,
    sha256         text,
    -- Set on run_started only.
    starts_run     boolean NOT NULL DEFAULT false,
    channel        text,
    case_ref       text,
    started        text,
    owner          text,
    start_approval text,
    -- run_finished / run_interrupted.
    ends_run       boolean NOT NULL DEFAULT false,
    -- run_interrupted: the run takes no more records of its own progress.
    interrupts_run boolean NOT NULL DEFAULT false,
    schedule       boolean NOT NULL DEFAULT false,
    pause          boolean NOT NULL DEFAULT false
);

CREATE INDEX clerk_journal_keys_run ON clerk_journal_keys (run_id, seq) WHERE run_id IS NOT NULL;
CREATE INDEX clerk_journal_keys_approval ON clerk_journal_keys (approval_id, seq)
    WHERE approval_id IS NOT NULL;
CREATE INDEX clerk_journal_keys_sha256 ON clerk_journal_keys (sha256, seq) WHERE sha256 IS NOT NULL;
CREATE INDEX clerk_journal_keys_started ON clerk_journal_keys (started, run_id) WHERE starts_run;
CREATE INDEX clerk_journal_keys_channel ON clerk_journal_keys (channel, run_id) WHERE starts_run;
CREATE INDEX clerk_journal_keys_case ON clerk_journal_keys (case_ref, run_id) WHERE starts_run;
-- A silent node's runs, looked up every few seconds by every node (db::cluster::orphaned_runs).
CREATE INDEX clerk_journal_keys_owner ON clerk_journal_keys (owner) WHERE starts_run;
CREATE INDEX clerk_journal_keys_ended ON clerk_journal_keys (run_id) WHERE ends_run;
CREATE INDEX clerk_journal_keys_interrupted ON clerk_journal_keys (run_id) WHERE interrupts_run;
CREATE INDEX clerk_journal_keys_schedule ON clerk_journal_keys (seq) WHERE schedule;
CREATE INDEX clerk_journal_keys_pause ON clerk_journal_keys (seq) WHERE pause;

-- The store owner id of each node's daemon (its runs' `owner`): a node silent for longer
-- than twice the lease has its daemon's open runs marked interrupted by another node
-- (src/serve/cluster.rs); from then on the shared journal refuses those runs' own records.
ALTER TABLE clerk_nodes ADD COLUMN owner text;

-- Each schedule slot's jobs, enqueued once across the installation (src/queue/postgres.rs,
-- RunQueue::enqueue_slot): the row is inserted in the transaction that enqueues them, so a
-- second scheduler firing the same slot (its turn lock lost with its connection, say)
-- finds the row and gets the same jobs back instead of enqueuing more.
CREATE TABLE clerk_schedule_slots (
    schedule  text NOT NULL,
    slot      timestamptz NOT NULL,
    jobs      bigint[] NOT NULL,
    node      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, slot)
);
