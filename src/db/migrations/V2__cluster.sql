-- The cluster's shared pause state and its nodes (see src/db/cluster.rs).

-- One row per scope ('*' = everything, else a channel id) that was ever paused: whether it
-- is paused now, by whom and why, and which node said so last. Each change is NOTIFYed on
-- `clerk_pause`; every node mirrors it into its own pause board (journal record, guard
-- switch) within moments.
CREATE TABLE clerk_pause_state (
    scope     text PRIMARY KEY,
    paused    boolean NOT NULL,
    username  text NOT NULL,
    reason    text NOT NULL,
    node      text NOT NULL,
    changed   timestamptz NOT NULL,
    version   bigint NOT NULL DEFAULT 1
);

-- Every node's heartbeat (for `clerk status` and /metrics).
CREATE TABLE clerk_nodes (
    node        text PRIMARY KEY,
    address     text NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    pages       integer NOT NULL,
    busy        integer NOT NULL
);

-- Each finished run's report (what `clerk run` prints per row), so a client of any node can
-- read the outcome of a job another node ran. The evidence itself stays in the journal of
-- the node that ran it (`node`).
CREATE TABLE clerk_run_reports (
    run_id    text PRIMARY KEY,
    node      text NOT NULL,
    finished  timestamptz NOT NULL DEFAULT now(),
    report    jsonb NOT NULL
);
