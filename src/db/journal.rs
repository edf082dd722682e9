//! The shared journal on PostgreSQL (`evidence::shared::SharedJournal`): the table
//! `clerk_journal` (migration V3), appended by every node.
//!
//! One append is one transaction: take the advisory transaction lock [`JOURNAL_LOCK`] (so
//! appenders take turns and the chain stays linear), read the head, check the batch's rules
//! (an approval is used once: `clerk_approval_uses`; a fenced record's claim is still the
//! current one in `clerk_jobs`), chain the accepted records onto the head, insert them with
//! one statement, commit. Each node's store already batches its appends (group commit), so
//! one transaction carries every record its threads queued meanwhile.
//!
//! A commit whose outcome is unknown (the connection broke during COMMIT) is resolved by
//! reading back the batch's first seq on a new connection: if the row there has our hash,
//! the batch committed.

use std::sync::Mutex;

use postgres::{Client, Transaction};

use crate::evidence::index::{self, By, Keys, Queries};
use crate::evidence::record::{self, GENESIS_PREV};
use crate::evidence::shared::{Pending, Refusal, Sealed, SharedError, SharedJournal};
use crate::evidence::Record;
use crate::evidence::{Event, StoreError};

/// The advisory lock key appends take (`pg_advisory_xact_lock`).
pub const JOURNAL_LOCK: i64 = 0x636c_6572_6b00_0002;

/// The PostgreSQL shared journal of one node.
pub struct PgJournal {
    url: String,
    node: String,
    conn: Mutex<Option<Client>>,
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        // Never drop the driver's client on an async thread (see `open`).
        let client = self.conn.get_mut().ok().and_then(Option::take);
        if let Some(client) = client {
            super::off_runtime(move || drop(client));
        }
    }
}

enum Failure {
    /// Nothing was committed.
    Before(postgres::Error),
    /// COMMIT failed: maybe committed.
    Commit(postgres::Error),
    Other(String),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Before(e)
    }
}

impl PgJournal {
    /// Connects (and checks the schema is current).
    pub fn open(url: &str, node: &str) -> Result<PgJournal, super::DbError> {
        // The driver's client blocks on its own runtime when dropped (also on an error
        // here): connect and check off any async thread.
        let client = super::off_runtime(|| {
            let mut client = super::connect(url)?;
            super::check_schema(&mut client)?;
            index_missing(&mut client)?;
            Ok::<_, super::DbError>(client)
        })?;
        Ok(PgJournal {
            url: url.to_owned(),
            node: node.to_owned(),
            conn: Mutex::new(Some(client)),
        })
    }

    fn unavailable(&self, reason: String) -> SharedError {
        SharedError::Unavailable {
            target: super::target(&self.url),
            reason,
        }
    }

    /// Runs `f` on a live connection (reconnecting once when the connection was lost).
    fn with_client<T: Send>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, Failure> + Send + Sync,
    ) -> Result<T, SharedError> {
        super::off_runtime(|| {
            let mut slot = self
                .conn
                .lock()
                .map_err(|_| self.unavailable("a thread panicked while appending".into()))?;
            let mut last = String::new();
            for _ in 0..2 {
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    *slot = Some(
                        super::connect(&self.url).map_err(|e| self.unavailable(e.to_string()))?,
                    );
                }
                let Some(client) = slot.as_mut() else {
                    continue;
                };
                match f(client) {
                    Ok(v) => return Ok(v),
                    Err(Failure::Before(e)) => {
                        last = super::describe(&e);
                        if !(e.is_closed() || client.is_closed() || lost(&e)) {
                            return Err(self.unavailable(last));
                        }
                        *slot = None;
                        tracing::warn!(error = %last, "journal database connection lost; retrying once on a new one");
                    }
                    Err(Failure::Commit(e)) => {
                        *slot = None;
                        return Err(SharedError::Unknown {
                            target: super::target(&self.url),
                            reason: super::describe(&e),
                        });
                    }
                    Err(Failure::Other(s)) => return Err(self.unavailable(s)),
                }
            }
            Err(self.unavailable(last))
        })
    }

    fn append_tx(
        &self,
        tx: &mut Transaction<'_>,
        batch: &[Pending],
    ) -> Result<(Vec<Result<Sealed, Refusal>>, usize), Failure> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK])?;
        let head = tx.query_opt(
            "SELECT seq, hash FROM clerk_journal ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        let (mut seq, mut prev) = match head {
            Some(row) => (to_u64(row.get::<_, i64>(0))? + 1, row.get::<_, String>(1)),
            None => (1, GENESIS_PREV.to_owned()),
        };
        let mut out = Vec::with_capacity(batch.len());
        let mut uses = Vec::new();
        let mut used_here: Vec<(String, String)> = Vec::new();
        let mut interrupted_here: Vec<String> = Vec::new();
        for p in batch {
            let event = p.prepared.event();
            if let (true, Some(run_id)) = (index::continues_run(event), event.run_id()) {
                let interrupted = interrupted_here.iter().any(|r| r == run_id)
                    || tx
                        .query_opt(
                            "SELECT 1 FROM clerk_journal_keys WHERE interrupts_run AND run_id = $1",
                            &[&run_id],
                        )?
                        .is_some();
                if interrupted {
                    out.push(Err(Refusal::RunEnded(run_id.to_owned())));
                    continue;
                }
            }
            if let Event::RunInterrupted { run_id, .. } = event {
                interrupted_here.push(run_id.clone());
            }
            if let Some(fence) = &p.fence {
                if let Some(why) = fence_refusal(tx, fence)? {
                    out.push(Err(Refusal::Fenced(why)));
                    continue;
                }
            }
            if let Event::ApprovalUsed {
                approval_id,
                run_id,
                ..
            } = p.prepared.event()
            {
                let earlier = match used_here.iter().find(|(a, _)| a == approval_id) {
                    Some((_, by)) => Some(by.clone()),
                    None => tx
                        .query_opt(
                            "SELECT run_id FROM clerk_approval_uses WHERE approval_id = $1",
                            &[approval_id],
                        )?
                        .map(|r| r.get::<_, String>(0)),
                };
                if let Some(by_run) = earlier {
                    out.push(Err(Refusal::AlreadyUsed {
                        approval_id: approval_id.clone(),
                        by_run,
                    }));
                    continue;
                }
                used_here.push((approval_id.clone(), run_id.clone()));
                uses.push((approval_id.clone(), run_id.clone(), seq));
            }
            let (rec, line) = record::seal_prepared(
                seq,
                crate::evidence::timestamp(chrono::Utc::now()),
                prev,
                p.prepared.clone(),
            );
            prev = rec.hash.clone();
            out.push(Ok(Sealed {
                seq,
                hash: rec.hash,
                line,
            }));
            seq += 1;
        }
        let sealed: Vec<&Sealed> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        if !sealed.is_empty() {
            let seqs: Vec<i64> = sealed
                .iter()
                .map(|s| i64::try_from(s.seq).map_err(|_| Failure::Other("seq overflow".into())))
                .collect::<Result<_, _>>()?;
            let hashes: Vec<&str> = sealed.iter().map(|s| s.hash.as_str()).collect();
            let lines: Vec<&str> = sealed.iter().map(|s| s.line.as_str()).collect();
            tx.execute(
                "INSERT INTO clerk_journal (seq, hash, line, node) \
                 SELECT s, h, l, $4 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(s, h, l)",
                &[&seqs, &hashes, &lines, &self.node],
            )?;
        }
        let keyed: Vec<(u64, &str)> = sealed.iter().map(|s| (s.seq, s.line.as_str())).collect();
        insert_keys(tx, &keyed)?;
        for (approval, run, seq) in &uses {
            let seq = i64::try_from(*seq).map_err(|_| Failure::Other("seq overflow".into()))?;
            tx.execute(
                "INSERT INTO clerk_approval_uses (approval_id, run_id, seq) VALUES ($1, $2, $3)",
                &[approval, run, &seq],
            )?;
        }
        Ok((out, uses.len()))
    }
}

/// Inserts the index rows (`clerk_journal_keys`) of `(seq, line)` records: what each one is
/// filed under, by [`index::keys_of`], the function the sled index uses.
fn insert_keys(tx: &mut Transaction<'_>, records: &[(u64, &str)]) -> Result<(), Failure> {
    if records.is_empty() {
        return Ok(());
    }
    let mut seq = Vec::new();
    let mut run_id = Vec::new();
    let mut approval_id = Vec::new();
    let mut sha256 = Vec::new();
    let mut starts_run = Vec::new();
    let mut channel = Vec::new();
    let mut case_ref = Vec::new();
    let mut started = Vec::new();
    let mut owner = Vec::new();
    let mut start_approval = Vec::new();
    let mut ends_run = Vec::new();
    let mut interrupts_run = Vec::new();
    let mut schedule = Vec::new();
    let mut pause = Vec::new();
    for (n, line) in records {
        let parsed = record::parse_line(line.as_bytes())
            .map_err(|e| Failure::Other(format!("record {n} is unreadable: {e}")))?;
        let k = index::keys_of(&parsed.record);
        seq.push(i64::try_from(*n).map_err(|_| Failure::Other("seq overflow".into()))?);
        run_id.push(k.run_id);
        approval_id.push(k.approval_id);
        sha256.push(k.sha256);
        starts_run.push(k.start.is_some());
        channel.push(k.start.as_ref().map(|s| s.channel.clone()));
        case_ref.push(k.start.as_ref().and_then(|s| s.case_ref.clone()));
        started.push(k.start.as_ref().map(|s| s.ts.clone()));
        owner.push(k.start.as_ref().map(|s| s.owner.clone()));
        start_approval.push(k.start.as_ref().and_then(|s| s.approval_id.clone()));
        ends_run.push(k.ends_run);
        interrupts_run.push(k.interrupts_run);
        schedule.push(k.schedule);
        pause.push(k.pause);
    }
    tx.execute(
        "INSERT INTO clerk_journal_keys (seq, run_id, approval_id, sha256, starts_run, channel, \
         case_ref, started, owner, start_approval, ends_run, interrupts_run, schedule, pause) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::bool[], \
         $13::bool[], $14::bool[])",
        &[
            &seq,
            &run_id,
            &approval_id,
            &sha256,
            &starts_run,
            &channel,
            &case_ref,
            &started,
            &owner,
            &start_approval,
            &ends_run,
            &interrupts_run,
            &schedule,
            &pause,
        ],
    )?;
    Ok(())
}

/// Indexes the records appended before `clerk_journal_keys` existed (or since it was
/// cleared), under the journal's lock; returns how many. Appends index their own records in
/// their transaction, so the index is always a prefix of the journal and only the tail can
/// be missing.
fn index_missing(client: &mut Client) -> Result<u64, super::DbError> {
    let mut total = 0;
    loop {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK])?;
        let rows = tx.query(
            "SELECT seq, line FROM clerk_journal WHERE seq > \
             (SELECT coalesce(max(seq), 0) FROM clerk_journal_keys) ORDER BY seq LIMIT 2000",
            &[],
        )?;
        if rows.is_empty() {
            tx.commit()?;
            return Ok(total);
        }
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.get(0);
            let seq = u64::try_from(seq)
                .map_err(|_| super::DbError::Query(format!("negative seq {seq}")))?;
            records.push((seq, r.get::<_, &str>(1)));
        }
        let n = records.len() as u64;
        insert_keys(&mut tx, &records).map_err(|f| match f {
            Failure::Before(e) | Failure::Commit(e) => super::DbError::from(e),
            Failure::Other(s) => super::DbError::Query(s),
        })?;
        tx.commit()?;
        total += n;
    }
}

/// What `clerk db status` says about the shared journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: i64,
    /// `(seq, hash)` of the head.
    pub head: Option<(i64, String)>,
    /// Records appended per node, by node name.
    pub by_node: Vec<(String, i64)>,
    pub approvals_used: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.head {
            None => write!(f, "shared journal: empty")?,
            Some((seq, hash)) => write!(
                f,
                "shared journal: {} records, head seq {seq} hash {hash}",
                self.records
            )?,
        }
        for (node, n) in &self.by_node {
            write!(f, "\n  node {node}: {n} records appended")?;
        }
        write!(f, "\n  approvals used: {}", self.approvals_used)
    }
}

/// Counts of the shared journal (for operators: `clerk db status`).
pub fn summary(client: &mut Client) -> Result<Summary, super::DbError> {
    let records: i64 = client
        .query_one("SELECT count(*) FROM clerk_journal", &[])?
        .get(0);
    let head = client
        .query_opt(
            "SELECT seq, hash FROM clerk_journal ORDER BY seq DESC LIMIT 1",
            &[],
        )?
        .map(|r| (r.get(0), r.get(1)));
    let by_node = client
        .query(
            "SELECT node, count(*) FROM clerk_journal GROUP BY node ORDER BY node",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let approvals_used: i64 = client
        .query_one("SELECT count(*) FROM clerk_approval_uses", &[])?
        .get(0);
    Ok(Summary {
        records,
        head,
        by_node,
        approvals_used,
    })
}

fn lost(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
}

fn to_u64(v: i64) -> Result<u64, Failure> {
    u64::try_from(v).map_err(|_| Failure::Other(format!("negative seq {v} in clerk_journal")))
}

/// `Some(reason)` when the fenced claim is no longer the job's current one.
fn fence_refusal(
    tx: &mut Transaction<'_>,
    fence: &crate::evidence::shared::JobFence,
) -> Result<Option<String>, Failure> {
    let id = i64::try_from(fence.job).map_err(|_| Failure::Other("job id overflow".into()))?;
    let row = tx.query_opt(
        "SELECT state, token, lease_until FROM clerk_jobs WHERE id = $1 FOR SHARE",
        &[&id],
    )?;
    let Some(row) = row else {
        return Ok(Some(format!(
            "job {} is not claimed any more (finished or gone)",
            fence.job
        )));
    };
    let state: String = row.get(0);
    let token: Option<String> = row.get(1);
    let until: Option<chrono::DateTime<chrono::Utc>> = row.get(2);
    if state != "claimed" || token.as_deref() != Some(fence.token.as_str()) {
        return Ok(Some(format!(
            "job {} was claimed again since (this node's claim is stale)",
            fence.job
        )));
    }
    match until {
        Some(u) if u > fence.now => Ok(None),
        Some(u) => Ok(Some(format!(
            "the lease on job {} ended at {}",
            fence.job,
            u.to_rfc3339()
        ))),
        None => Ok(Some(format!("job {} has no lease", fence.job))),
    }
}

impl SharedJournal for PgJournal {
    fn describe(&self) -> String {
        super::target(&self.url)
    }

    fn append(&self, batch: Vec<Pending>) -> Result<Vec<Result<Sealed, Refusal>>, SharedError> {
        let attempted: Mutex<Option<Vec<Result<Sealed, Refusal>>>> = Mutex::new(None);
        let result = self.with_client(|client| {
            let mut tx = client.transaction()?;
            let (out, _) = self.append_tx(&mut tx, &batch)?;
            if let Ok(mut a) = attempted.lock() {
                *a = Some(out.clone());
            }
            tx.commit().map_err(Failure::Commit)?;
            Ok(out)
        });
        let Err(SharedError::Unknown { target, reason }) = result else {
            return result;
        };
        // Did it commit? Its first record's seq holds our hash only if it did (a hash covers
        // the time and the previous hash, so no other append can produce it).
        let out = attempted.lock().ok().and_then(|mut a| a.take());
        let first = out
            .as_ref()
            .and_then(|o| o.iter().find_map(|r| r.as_ref().ok()).cloned());
        let Some(first) = first else {
            return Ok(out.unwrap_or_default());
        };
        tracing::warn!(%reason, seq = first.seq, "journal commit outcome unknown; reading it back");
        match self.read_after(first.seq - 1, 1) {
            Ok(rows) if rows.first().is_some_and(|r| r.hash == first.hash) => {
                Ok(out.unwrap_or_default())
            }
            Ok(_) => Err(self.unavailable(format!(
                "the commit failed ({reason}) and the records are not in the journal"
            ))),
            Err(_) => Err(SharedError::Unknown { target, reason }),
        }
    }

    fn index_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Keys)>, SharedError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_client(|client| {
            let rows = client.query(
                "SELECT seq, run_id, approval_id, sha256, starts_run, channel, case_ref, started, \
                 owner, start_approval, ends_run, interrupts_run, schedule, pause \
                 FROM clerk_journal_keys WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )?;
            rows.iter()
                .map(|r| {
                    let starts_run: bool = r.get(4);
                    let channel: Option<String> = r.get(5);
                    let case_ref: Option<String> = r.get(6);
                    let started: Option<String> = r.get(7);
                    let owner: Option<String> = r.get(8);
                    let start_approval: Option<String> = r.get(9);
                    // Any start column set makes a start (an edited row then differs).
                    let start = (starts_run
                        || channel.is_some()
                        || case_ref.is_some()
                        || started.is_some()
                        || owner.is_some()
                        || start_approval.is_some())
                    .then(|| index::Start {
                        channel: channel.unwrap_or_default(),
                        case_ref,
                        ts: started.unwrap_or_default(),
                        owner: owner.unwrap_or_default(),
                        approval_id: start_approval,
                    });
                    Ok((
                        to_u64(r.get(0))?,
                        Keys {
                            run_id: r.get(1),
                            approval_id: r.get(2),
                            sha256: r.get(3),
                            start,
                            ends_run: r.get(10),
                            interrupts_run: r.get(11),
                            schedule: r.get(12),
                            pause: r.get(13),
                        },
                    ))
                })
                .collect()
        })
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Sealed>, SharedError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_client(|client| {
            let rows = client.query(
                "SELECT seq, hash, line FROM clerk_journal WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(Sealed {
                        seq: to_u64(r.get(0))?,
                        hash: r.get(1),
                        line: r.get(2),
                    })
                })
                .collect()
        })
    }

    fn reindex(&self) -> Result<u64, SharedError> {
        self.with_client(|client| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK])?;
            tx.execute("DELETE FROM clerk_journal_keys", &[])?;
            tx.commit()?;
            index_missing(client).map_err(|e| Failure::Other(e.to_string()))
        })
    }

    fn head(&self) -> Result<Option<(u64, String)>, SharedError> {
        self.with_client(|client| {
            let row = client.query_opt(
                "SELECT seq, hash FROM clerk_journal ORDER BY seq DESC LIMIT 1",
                &[],
            )?;
            row.map(|r| Ok((to_u64(r.get(0))?, r.get(1)))).transpose()
        })
    }
}

/// The index's queries, answered from `clerk_journal_keys` and `clerk_journal` (every
/// node's records, as committed).
impl PgJournal {
    fn lines_where(&self, condition: &str, arg: Option<&str>) -> Result<Vec<Record>, StoreError> {
        let sql = format!(
            "SELECT j.seq, j.line FROM clerk_journal_keys k JOIN clerk_journal j USING (seq) \
             WHERE {condition} ORDER BY j.seq"
        );
        let rows = self.with_client(|client| {
            let rows = match arg {
                Some(a) => client.query(&sql, &[&a])?,
                None => client.query(&sql, &[])?,
            };
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>())
        })?;
        rows.into_iter()
            .map(|(seq, line)| {
                record::parse_line(line.as_bytes())
                    .map(|p| p.record)
                    .map_err(|e| {
                        StoreError::Other(format!(
                            "the shared journal at {} holds an unreadable record at seq {seq}: \
                             {e} (run `clerk verify`)",
                            self.describe()
                        ))
                    })
            })
            .collect()
    }

    fn names(&self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, StoreError> {
        Ok(self.with_client(|client| {
            let rows = match arg {
                Some(a) => client.query(sql, &[&a])?,
                None => client.query(sql, &[])?,
            };
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })?)
    }
}

impl Queries for PgJournal {
    fn run_records(&self, run_id: &str) -> Result<Vec<Record>, StoreError> {
        self.lines_where("k.run_id = $1", Some(run_id))
    }

    fn approval_records(&self, approval_id: &str) -> Result<Vec<Record>, StoreError> {
        self.lines_where("k.approval_id = $1", Some(approval_id))
    }

    fn evidence_records(&self, sha256: &str) -> Result<Vec<Record>, StoreError> {
        self.lines_where("k.sha256 = $1", Some(sha256))
    }

    fn schedule_records(&self) -> Result<Vec<Record>, StoreError> {
        self.lines_where("k.schedule", None)
    }

    fn pause_records(&self) -> Result<Vec<Record>, StoreError> {
        self.lines_where("k.pause", None)
    }

    fn approval_ids(&self) -> Result<Vec<String>, StoreError> {
        // Sorted bytewise, as the sled index sorts them.
        self.names(
            "SELECT id FROM (SELECT approval_id FROM clerk_journal_keys WHERE approval_id IS NOT NULL \
             UNION SELECT start_approval FROM clerk_journal_keys WHERE start_approval IS NOT NULL) \
             AS a(id) ORDER BY id COLLATE \"C\"",
            None,
        )
    }

    fn runs_since(&self, since_ts: Option<&str>) -> Result<Vec<String>, StoreError> {
        self.names(
            "SELECT run_id FROM clerk_journal_keys WHERE starts_run AND started COLLATE \"C\" >= $1 \
             ORDER BY started COLLATE \"C\", run_id COLLATE \"C\"",
            Some(since_ts.unwrap_or("")),
        )
    }

    fn runs_by(&self, by: By, name: &str) -> Result<Vec<String>, StoreError> {
        let sql = match by {
            By::Channel => {
                "SELECT run_id FROM clerk_journal_keys WHERE starts_run AND channel = $1 \
                 ORDER BY run_id COLLATE \"C\""
            }
            By::Case => {
                "SELECT run_id FROM clerk_journal_keys WHERE starts_run AND case_ref = $1 \
                 ORDER BY run_id COLLATE \"C\""
            }
        };
        self.names(sql, Some(name))
    }

    fn open_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.with_client(|client| {
            let rows = client.query(
                "SELECT s.run_id, s.owner FROM clerk_journal_keys s WHERE s.starts_run \
                 AND NOT EXISTS (SELECT 1 FROM clerk_journal_keys e \
                 WHERE e.ends_run AND e.run_id = s.run_id) ORDER BY s.run_id COLLATE \"C\"",
                &[],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?)
    }

    fn run_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self.with_client(|client| {
            Ok(client
                .query_one(
                    "SELECT count(*) FROM clerk_journal_keys WHERE starts_run",
                    &[],
                )?
                .get(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
