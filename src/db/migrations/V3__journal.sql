-- The installation's shared journal (`[cluster] journal = "database"`, see
-- src/db/journal.rs and src/evidence/shared.rs).
--
-- One row per record, the line byte-identical to a journal.jsonl line. Appends take the
-- advisory transaction lock clerk_journal_lock() first, read the head, chain their records
-- onto it and insert them: the chain stays linear however many nodes append.
CREATE TABLE clerk_journal (
    seq   bigint PRIMARY KEY CHECK (seq > 0),
    hash  text NOT NULL UNIQUE,
    line  text NOT NULL,
    -- The node that appended it (for operators; not part of the chain).
    node  text NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);

-- An approval is used once across the installation: the row is inserted in the transaction
-- that appends the approval_used record.
CREATE TABLE clerk_approval_uses (
    approval_id text PRIMARY KEY,
    run_id      text NOT NULL,
    seq         bigint NOT NULL REFERENCES clerk_journal (seq)
);

-- Append-only: an UPDATE, DELETE or TRUNCATE is refused, whoever asks. The table's owner or
-- a superuser can still disable the triggers; what detects that is `clerk verify` (every
-- node's copy is compared line by line) and the Merkle log's signed, witnessed checkpoints.
CREATE FUNCTION clerk_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'clerk_journal is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER clerk_journal_no_update BEFORE UPDATE OR DELETE ON clerk_journal
    FOR EACH ROW EXECUTE FUNCTION clerk_journal_append_only();
CREATE TRIGGER clerk_journal_no_truncate BEFORE TRUNCATE ON clerk_journal
    FOR EACH STATEMENT EXECUTE FUNCTION clerk_journal_append_only();
CREATE TRIGGER clerk_approval_uses_no_update BEFORE UPDATE OR DELETE ON clerk_approval_uses
    FOR EACH ROW EXECUTE FUNCTION clerk_journal_append_only();
