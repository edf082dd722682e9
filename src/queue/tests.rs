//! Unit tests of the queue's rules, through [`RunQueue`] on an [`EmbeddedQueue`] in a
//! temporary directory. Time is always injected (`at(seconds)`); nothing sleeps.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;

const LEASE: Duration = Duration::from_secs(60);

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-01T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(secs)
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    at(0) + TimeDelta::milliseconds(ms)
}

/// Generous limits: 10 jobs at once, 10 per channel, no interval.
fn roomy() -> QueueLimits {
    QueueLimits {
        global: 10,
        channel_default: ChannelLimits {
            concurrent: 10,
            min_interval: Duration::ZERO,
        },
        channels: BTreeMap::new(),
    }
}

fn open_embedded_with(limits: QueueLimits, backoff: Backoff) -> (tempfile::TempDir, EmbeddedQueue) {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(dir.path(), limits, backoff).unwrap();
    (dir, q)
}

fn open_embedded(limits: QueueLimits) -> (tempfile::TempDir, EmbeddedQueue) {
    open_embedded_with(limits, Backoff::default())
}

/// Which implementation the rules run against: `on_both!` runs each test twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Embedded) };
}

fn with_backend(backend: Backend, body: impl FnOnce()) {
    BACKEND.with(|b| b.set(backend));
    body()
}

/// Keeps a test queue's storage alive (a directory, or a database on the shared server).
#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Db(String),
}

/// A fresh, migrated database on the process's shared PostgreSQL.
pub(super) fn pg_database() -> String {
    let pg = crate::sample::postgres::Postgres::shared().expect("PostgreSQL for the queue tests");
    let url = pg.fresh_database("queue").unwrap();
    crate::db::migrate(&url).unwrap();
    url
}

/// A fresh queue of the current backend.
fn open_with(limits: QueueLimits, backoff: Backoff) -> (Keep, Box<dyn RunQueue>) {
    match BACKEND.with(|b| b.get()) {
        Backend::Embedded => {
            let (dir, q) = open_embedded_with(limits, backoff);
            (Keep::Dir(dir), Box::new(q))
        }
        Backend::Postgres => {
            let url = pg_database();
            let q = PgQueue::open(&url, "node-a", limits, backoff).unwrap();
            (Keep::Db(url), Box::new(q))
        }
    }
}

fn open(limits: QueueLimits) -> (Keep, Box<dyn RunQueue>) {
    open_with(limits, Backoff::default())
}

/// Defines a test as a module with one test per backend (`…::embedded`, `…::postgres`).
macro_rules! on_both {
    ($(#[doc = $doc:literal])* fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;
            #[test]
            fn embedded() {
                with_backend(Backend::Embedded, || $body)
            }
            #[test]
            fn postgres() {
                with_backend(Backend::Postgres, || $body)
            }
        }
    };
}

impl<T: RunQueue + ?Sized> RunQueue for Box<T> {
    fn enqueue(&self, spec: JobSpec) -> Result<JobId, QueueError> {
        (**self).enqueue(spec)
    }
    fn claim(&self, w: &str, l: Duration, now: DateTime<Utc>) -> Result<Option<Claim>, QueueError> {
        (**self).claim(w, l, now)
    }
    fn fence(&self, c: &Claim, now: DateTime<Utc>) -> Result<(), QueueError> {
        (**self).fence(c, now)
    }
    fn heartbeat(&self, c: &Claim, now: DateTime<Utc>) -> Result<DateTime<Utc>, QueueError> {
        (**self).heartbeat(c, now)
    }
    fn complete(&self, c: &Claim, o: Outcome) -> Result<(), QueueError> {
        (**self).complete(c, o)
    }
    fn fail(&self, c: &Claim, f: Failure, now: DateTime<Utc>) -> Result<Disposition, QueueError> {
        (**self).fail(c, f, now)
    }
    fn release(
        &self,
        c: &Claim,
        r: &str,
        nb: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        (**self).release(c, r, nb, now)
    }
    fn abandon(&self, p: &str, r: &str, now: DateTime<Utc>) -> Result<Vec<JobId>, QueueError> {
        (**self).abandon(p, r, now)
    }
    fn retry(&self, j: JobId) -> Result<(), QueueError> {
        (**self).retry(j)
    }
    fn drop_job(&self, j: JobId) -> Result<(), QueueError> {
        (**self).drop_job(j)
    }
    fn pause_channel(&self, c: &str, r: &str) -> Result<(), QueueError> {
        (**self).pause_channel(c, r)
    }
    fn resume_channel(&self, c: &str) -> Result<(), QueueError> {
        (**self).resume_channel(c)
    }
    fn paused_channels(&self) -> Result<BTreeMap<String, ChannelPause>, QueueError> {
        (**self).paused_channels()
    }
    fn list(&self, f: &JobFilter) -> Result<Vec<Job>, QueueError> {
        (**self).list(f)
    }
    fn get(&self, j: JobId) -> Result<Option<Job>, QueueError> {
        (**self).get(j)
    }
}

fn spec(channel: &str, priority: Priority, tag: &str) -> JobSpec {
    let mut s = JobSpec::new("order-lookup", channel, "ops-anna");
    s.priority = priority;
    s.inputs.insert("tag".into(), tag.into());
    s
}

fn enqueue(q: &dyn RunQueue, channel: &str, priority: Priority, tag: &str) -> JobId {
    q.enqueue(spec(channel, priority, tag)).unwrap()
}

fn claim(q: &dyn RunQueue, worker: &str, now: DateTime<Utc>) -> Option<Claim> {
    q.claim(worker, LEASE, now).unwrap()
}

fn tag(c: &Claim) -> &str {
    &c.spec.inputs["tag"]
}

fn ok() -> Outcome {
    Outcome {
        run_id: Some("run-1".into()),
        status: "ok".into(),
    }
}

fn job(q: &dyn RunQueue, id: JobId) -> Job {
    q.get(id).unwrap().unwrap()
}

// ---------------------------------------------------------------- order

on_both! {
fn claims_by_priority_then_in_enqueue_order() {
    let (_d, q) = open(roomy());
    for (p, t) in [
        (Priority::Bulk, "bulk-1"),
        (Priority::Scheduled, "sched-1"),
        (Priority::Manual, "manual-1"),
        (Priority::Submit, "submit-1"),
        (Priority::Manual, "manual-2"),
        (Priority::Bulk, "bulk-2"),
        (Priority::Submit, "submit-2"),
        (Priority::Scheduled, "sched-2"),
    ] {
        enqueue(&q, "shop", p, t);
    }
    let order: Vec<String> = std::iter::from_fn(|| claim(&q, "w", at(0)))
        .map(|c| tag(&c).to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "submit-1", "submit-2", "manual-1", "manual-2", "sched-1", "sched-2", "bulk-1",
            "bulk-2"
        ]
    );
}
}

on_both! {
fn ids_increase_and_claims_carry_the_spec() {
    let (_d, q) = open(roomy());
    let a = enqueue(&q, "shop", Priority::Manual, "a");
    let b = enqueue(&q, "shop", Priority::Manual, "b");
    assert!(b > a);
    let c = claim(&q, "w1", at(0)).unwrap();
    assert_eq!((c.job, c.attempt, c.worker.as_str()), (a, 1, "w1"));
    assert_eq!(c.spec, spec("shop", Priority::Manual, "a"));
    assert_eq!(c.lease_until, at(60));
    let j = job(&q, a);
    assert_eq!(j.state, JobState::Claimed);
    assert_eq!(j.lease.as_ref().map(|l| l.until), Some(at(60)));
}
}

// ---------------------------------------------------------------- limits

on_both! {
fn global_limit_bounds_jobs_claimed_and_not_finished() {
    let mut limits = roomy();
    limits.global = 2;
    let (_d, q) = open(limits);
    for ch in ["a", "b", "c"] {
        enqueue(&q, ch, Priority::Manual, ch);
    }
    let first = claim(&q, "w", at(0)).unwrap();
    claim(&q, "w", at(0)).unwrap();
    assert!(
        claim(&q, "w", at(1)).is_none(),
        "a third job ran over the global limit"
    );
    q.complete(&first, ok()).unwrap();
    assert_eq!(tag(&claim(&q, "w", at(2)).unwrap()), "c");
}
}

on_both! {
fn channel_limit_holds_its_jobs_and_lets_other_channels_pass() {
    let mut limits = roomy();
    limits.channel_default.concurrent = 1;
    limits.channels.insert(
        "big".into(),
        ChannelLimits {
            concurrent: 2,
            min_interval: Duration::ZERO,
        },
    );
    let (_d, q) = open(limits);
    for (ch, t) in [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("big", "big1"),
        ("big", "big2"),
        ("big", "big3"),
    ] {
        enqueue(&q, ch, Priority::Manual, t);
    }
    let got: Vec<Claim> = std::iter::from_fn(|| claim(&q, "w", at(0))).collect();
    let tags: Vec<&str> = got.iter().map(tag).collect();
    assert_eq!(tags, ["a1", "b1", "big1", "big2"]);
    q.complete(&got[0], ok()).unwrap();
    assert_eq!(tag(&claim(&q, "w", at(1)).unwrap()), "a2");
    assert!(claim(&q, "w", at(1)).is_none());
    q.fail(&got[2], Failure::permanent("gone"), at(2)).unwrap();
    assert_eq!(tag(&claim(&q, "w", at(2)).unwrap()), "big3");
}
}

on_both! {
fn min_interval_spaces_the_starts_of_a_channel() {
    let mut limits = roomy();
    limits.channels.insert(
        "slow".into(),
        ChannelLimits {
            concurrent: 5,
            min_interval: Duration::from_secs(10),
        },
    );
    let (_d, q) = open(limits);
    enqueue(&q, "slow", Priority::Submit, "s1");
    enqueue(&q, "slow", Priority::Submit, "s2");
    enqueue(&q, "slow", Priority::Submit, "s3");
    enqueue(&q, "fast", Priority::Bulk, "f1");
    let s1 = claim(&q, "w", at(0)).unwrap();
    assert_eq!(tag(&s1), "s1");
    // The slow channel waits; a lower priority on another channel does not.
    assert_eq!(tag(&claim(&q, "w", at(1)).unwrap()), "f1");
    // Finishing the run does not shorten the interval between starts.
    q.complete(&s1, ok()).unwrap();
    assert!(claim(&q, "w", at(5)).is_none());
    assert!(claim(&q, "w", at_ms(9_999)).is_none());
    assert_eq!(tag(&claim(&q, "w", at(10)).unwrap()), "s2");
    // Spaced from the latest start, not the first.
    assert!(claim(&q, "w", at_ms(19_999)).is_none());
    assert_eq!(tag(&claim(&q, "w", at(20)).unwrap()), "s3");
}
}

on_both! {
fn paused_channel_keeps_its_jobs_queued_until_resumed() {
    let (_d, q) = open(roomy());
    let a1 = enqueue(&q, "a", Priority::Submit, "a1");
    enqueue(&q, "b", Priority::Bulk, "b1");
    enqueue(&q, "a", Priority::Manual, "a-running");
    q.pause_channel("b", "hold").unwrap();
    assert_eq!(tag(&claim(&q, "w", at(0)).unwrap()), "a1");
    let running = claim(&q, "w", at(0)).unwrap();
    assert_eq!(tag(&running), "a-running");
    assert!(
        claim(&q, "w", at(0)).is_none(),
        "a paused channel's job was claimed"
    );
    q.resume_channel("b").unwrap();
    q.pause_channel("a", "seller center maintenance until 10:00")
        .unwrap();
    enqueue(&q, "a", Priority::Submit, "a2");
    let paused = q.paused_channels().unwrap();
    assert_eq!(
        paused.get("a").map(|p| p.reason.as_str()),
        Some("seller center maintenance until 10:00")
    );
    assert_eq!(paused.len(), 1);
    // b (bulk) runs before a2 (submit) because a is paused.
    assert_eq!(tag(&claim(&q, "w", at(1)).unwrap()), "b1");
    assert!(claim(&q, "w", at(2)).is_none());
    // Jobs already claimed on a paused channel run on.
    q.heartbeat(&running, at(3)).unwrap();
    q.complete(&running, ok()).unwrap();
    assert_eq!(job(&q, a1).state, JobState::Claimed);
    q.resume_channel("a").unwrap();
    q.resume_channel("a").unwrap(); // not paused: a no-op
    assert!(q.paused_channels().unwrap().is_empty());
    assert_eq!(tag(&claim(&q, "w", at(4)).unwrap()), "a2");
}
}

// ---------------------------------------------------------------- leases

on_both! {
fn an_expired_lease_makes_the_job_claimable_again_and_counts_an_attempt() {
    let mut limits = roomy();
    limits.global = 1;
    let (_d, q) = open(limits);
    let id = enqueue(&q, "shop", Priority::Manual, "x");
    let first = claim(&q, "w1", at(0)).unwrap();
    assert!(claim(&q, "w2", at(59)).is_none(), "claimed while leased");
    let second = claim(&q, "w2", at(60)).unwrap();
    assert_eq!((second.job, second.attempt), (id, 2));
    assert_ne!(second.token, first.token);
    let j = job(&q, id);
    assert_eq!(j.attempts, 2);
    assert!(j
        .last_error
        .as_deref()
        .unwrap()
        .contains("lease of worker w1 expired"));
    // The dead worker's claim is refused everywhere.
    for err in [
        q.complete(&first, ok()).unwrap_err(),
        q.heartbeat(&first, at(61)).unwrap_err(),
        q.fail(&first, Failure::transient("late"), at(61))
            .unwrap_err(),
    ] {
        match err {
            QueueError::LeaseLost { job, reason } => {
                assert_eq!(job, id);
                assert!(reason.contains("claimed again"), "{reason}");
            }
            other => panic!("expected LeaseLost, got {other}"),
        }
    }
    q.complete(&second, ok()).unwrap();
    assert_eq!(job(&q, id).state, JobState::Done);
}
}

on_both! {
fn an_expired_last_attempt_is_dead_lettered() {
    let (_d, q) = open(roomy());
    let mut s = spec("shop", Priority::Manual, "x");
    s.max_attempts = 1;
    let id = q.enqueue(s).unwrap();
    claim(&q, "w1", at(0)).unwrap();
    assert!(claim(&q, "w2", at(60)).is_none());
    let j = job(&q, id);
    assert_eq!(j.state, JobState::Dead);
    let reason = j.dead_reason.unwrap();
    assert!(
        reason.contains("1 of 1 attempts") && reason.contains("expired"),
        "{reason}"
    );
}
}

on_both! {
fn heartbeat_extends_the_lease_and_fails_once_it_is_lost() {
    let (_d, q) = open(roomy());
    let id = enqueue(&q, "shop", Priority::Manual, "x");
    let c = claim(&q, "w1", at(0)).unwrap();
    assert_eq!(q.heartbeat(&c, at(50)).unwrap(), at(110));
    assert_eq!(job(&q, id).lease.unwrap().until, at(110));
    // Still leased at 100 thanks to the heartbeat.
    assert!(claim(&q, "w2", at(100)).is_none());
    assert_eq!(job(&q, id).state, JobState::Claimed);
    // At the lease's end the heartbeat comes too late, even before anyone reclaims.
    match q.heartbeat(&c, at(110)) {
        Err(QueueError::LeaseLost { job, reason }) => {
            assert_eq!(job, id);
            assert!(reason.contains("ended"), "{reason}");
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    // A forged token is refused too.
    let mut forged = c.clone();
    forged.token = "0".repeat(32);
    assert!(matches!(
        q.heartbeat(&forged, at(60)),
        Err(QueueError::LeaseLost { .. })
    ));
    // Finished jobs have no lease.
    q.complete(&c, ok()).unwrap();
    assert!(matches!(
        q.heartbeat(&c, at(70)),
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        q.complete(&c, ok()),
        Err(QueueError::LeaseLost { .. })
    ));
}
}

// ---------------------------------------------------------------- failures

#[test]
fn backoff_grows_is_capped_and_jitter_stays_within_bounds() {
    let b = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
        jitter_percent: 20,
    };
    let full = |n: u32| b.delay(n, 0);
    let expected = [10, 20, 40, 80, 160, 300, 300];
    for (i, secs) in expected.iter().enumerate() {
        assert_eq!(
            full(i as u32 + 1),
            Duration::from_secs(*secs),
            "attempt {}",
            i + 1
        );
    }
    assert_eq!(full(0), Duration::from_secs(10));
    assert_eq!(full(u32::MAX), Duration::from_secs(300));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 1..=12u32 {
        let top = full(n);
        let bottom = top.mul_f64(0.8);
        let mut seen_low = false;
        for r in (0..2_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }) {
            let d = b.delay(n, r);
            assert!(
                d <= top && d >= bottom,
                "attempt {n}: {d:?} outside {bottom:?}..={top:?}"
            );
            seen_low |= d < top.mul_f64(0.9);
        }
        assert!(seen_low, "attempt {n}: jitter never moved the delay");
        assert!(b.delay(n, u64::MAX) >= bottom);
    }
    let none = Backoff {
        jitter_percent: 0,
        ..b
    };
    assert_eq!(none.delay(3, u64::MAX), Duration::from_secs(40));
    let all = Backoff {
        jitter_percent: 100,
        ..b
    };
    assert!(all.delay(3, u64::MAX) <= Duration::from_millis(1));
    assert_eq!(all.delay(3, 0), Duration::from_secs(40));
}

on_both! {
fn a_transient_failure_is_retried_after_a_growing_backoff() {
    let backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
        jitter_percent: 20,
    };
    let (_d, q) = open_with(roomy(), backoff);
    let mut s = spec("shop", Priority::Manual, "x");
    s.max_attempts = 5;
    let id = q.enqueue(s).unwrap();
    let mut now = at(0);
    for (attempt, full) in [(1, 10_000), (2, 20_000), (3, 40_000)] {
        let c = claim(&q, "w", now).unwrap();
        assert_eq!(c.attempt, attempt);
        let d = q
            .fail(&c, Failure::transient("seller center 503"), now)
            .unwrap();
        let Disposition::Retry {
            not_before: Some(nb),
        } = d
        else {
            panic!("expected a retry, got {d:?}");
        };
        let delay = (nb - now).num_milliseconds();
        assert!(
            (full * 8 / 10..=full).contains(&delay),
            "attempt {attempt}: retry in {delay} ms, expected {}..={full}",
            full * 8 / 10
        );
        let j = job(&q, id);
        assert_eq!(
            (j.state, j.not_before, j.last_error.as_deref()),
            (JobState::Queued, Some(nb), Some("seller center 503"))
        );
        assert!(claim(&q, "w", nb - TimeDelta::milliseconds(1)).is_none());
        now = nb;
    }
    assert_eq!(claim(&q, "w", now).unwrap().attempt, 4);
}
}

on_both! {
fn running_out_of_attempts_dead_letters_with_the_reason() {
    let (_d, q) = open(roomy());
    let mut s = spec("shop", Priority::Manual, "x");
    s.max_attempts = 2;
    let id = q.enqueue(s).unwrap();
    let c = claim(&q, "w", at(0)).unwrap();
    let Disposition::Retry {
        not_before: Some(nb),
    } = q.fail(&c, Failure::transient("timeout 1"), at(1)).unwrap()
    else {
        panic!("first failure should retry");
    };
    let c = claim(&q, "w", nb).unwrap();
    assert_eq!(c.attempt, 2);
    let d = q.fail(&c, Failure::transient("timeout 2"), nb).unwrap();
    let Disposition::Dead { reason } = d else {
        panic!("expected dead letter, got {d:?}");
    };
    assert!(
        reason.contains("2 of 2 attempts") && reason.contains("timeout 2"),
        "{reason}"
    );
    let j = job(&q, id);
    assert_eq!(j.state, JobState::Dead);
    assert_eq!(j.dead_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(j.finished_at, Some(nb));
    assert!(claim(&q, "w", at(100_000)).is_none());
    assert_eq!(
        q.list(&JobFilter {
            state: Some(JobState::Dead),
            ..JobFilter::default()
        })
        .unwrap()
        .len(),
        1
    );
}
}

on_both! {
fn a_permanent_failure_dead_letters_at_once() {
    let (_d, q) = open(roomy());
    let mut s = spec("shop", Priority::Manual, "x");
    s.max_attempts = 5;
    let id = q.enqueue(s).unwrap();
    let c = claim(&q, "w", at(0)).unwrap();
    let d = q
        .fail(&c, Failure::permanent("order SO-9 does not exist"), at(1))
        .unwrap();
    let Disposition::Dead { reason } = d else {
        panic!("expected dead letter, got {d:?}");
    };
    assert!(reason.contains("order SO-9 does not exist"), "{reason}");
    let j = job(&q, id);
    assert_eq!((j.state, j.attempts), (JobState::Dead, 1));
    assert!(claim(&q, "w", at(100_000)).is_none());
}
}

// ---------------------------------------------------------------- operator actions

on_both! {
fn retry_requeues_a_dead_job_and_drop_removes_jobs_for_good() {
    let (_d, q) = open(roomy());
    let dead = enqueue(&q, "shop", Priority::Manual, "dead");
    let c = claim(&q, "w", at(0)).unwrap();
    q.fail(&c, Failure::permanent("no such order"), at(0))
        .unwrap();
    let waiting = enqueue(&q, "shop", Priority::Manual, "waiting");

    assert!(matches!(
        q.retry(waiting),
        Err(QueueError::InvalidState {
            state: JobState::Queued,
            ..
        })
    ));
    q.retry(dead).unwrap();
    let j = job(&q, dead);
    assert_eq!(
        (j.state, j.attempts, j.dead_reason),
        (JobState::Queued, 0, None)
    );
    assert_eq!(j.last_error.as_deref(), Some("no such order"));
    let again = claim(&q, "w", at(1)).unwrap();
    assert_eq!((again.job, again.attempt), (dead, 1));

    assert!(matches!(
        q.drop_job(dead),
        Err(QueueError::InvalidState {
            state: JobState::Claimed,
            ..
        })
    ));
    q.drop_job(waiting).unwrap();
    assert_eq!(job(&q, waiting).state, JobState::Dropped);
    assert!(claim(&q, "w", at(2)).is_none(), "a dropped job was claimed");
    assert!(matches!(
        q.retry(waiting),
        Err(QueueError::InvalidState {
            state: JobState::Dropped,
            ..
        })
    ));
    q.fail(&again, Failure::permanent("still no such order"), at(3))
        .unwrap();
    q.drop_job(dead).unwrap();
    assert_eq!(job(&q, dead).state, JobState::Dropped);

    let nobody = JobId(999);
    assert!(matches!(q.retry(nobody), Err(QueueError::UnknownJob(j)) if j == nobody));
    assert!(matches!(q.drop_job(nobody), Err(QueueError::UnknownJob(_))));
    assert!(q.get(nobody).unwrap().is_none());
    let msg = q.drop_job(nobody).unwrap_err().to_string();
    assert_eq!(msg, "no job 999 in the queue");
}
}

on_both! {
fn list_filters_by_state_and_channel() {
    let (_d, q) = open(roomy());
    let a = enqueue(&q, "a", Priority::Manual, "a1");
    let b = enqueue(&q, "b", Priority::Manual, "b1");
    let a2 = enqueue(&q, "a", Priority::Bulk, "a2");
    claim(&q, "w", at(0)).unwrap();
    let ids =
        |f: JobFilter| -> Vec<JobId> { q.list(&f).unwrap().into_iter().map(|j| j.id).collect() };
    assert_eq!(ids(JobFilter::default()), [a, b, a2]);
    let on_a = JobFilter {
        channel: Some("a".into()),
        ..JobFilter::default()
    };
    assert_eq!(ids(on_a.clone()), [a, a2]);
    assert_eq!(
        ids(JobFilter {
            state: Some(JobState::Queued),
            ..on_a
        }),
        [a2]
    );
    assert_eq!(
        ids(JobFilter {
            limit: Some(2),
            ..JobFilter::default()
        }),
        [a, b]
    );
}
}

// ---------------------------------------------------------------- input and I/O errors

#[test]
fn bad_specs_limits_and_leases_are_refused() {
    let (dir, q) = open_embedded(roomy());
    let mut s = spec("shop", Priority::Manual, "x");
    s.max_attempts = 0;
    assert!(matches!(q.enqueue(s), Err(QueueError::BadInput(_))));
    assert!(matches!(
        q.enqueue(spec(" ", Priority::Manual, "x")),
        Err(QueueError::BadInput(_))
    ));
    enqueue(&q, "shop", Priority::Manual, "x");
    assert!(matches!(
        q.claim("w", Duration::ZERO, at(0)),
        Err(QueueError::BadInput(_))
    ));
    assert!(matches!(
        q.claim("", LEASE, at(0)),
        Err(QueueError::BadInput(_))
    ));
    drop(q);
    let mut limits = roomy();
    limits.channels.insert(
        "x".into(),
        ChannelLimits {
            concurrent: 0,
            min_interval: Duration::ZERO,
        },
    );
    assert!(matches!(
        EmbeddedQueue::open(dir.path(), limits, Backoff::default()),
        Err(QueueError::BadInput(_))
    ));
    let mut limits = roomy();
    limits.channel_default.min_interval = Duration::MAX;
    assert!(matches!(
        EmbeddedQueue::open(dir.path(), limits, Backoff::default()),
        Err(QueueError::BadInput(_))
    ));
    let backoff = Backoff {
        jitter_percent: 101,
        ..Backoff::default()
    };
    assert!(matches!(
        EmbeddedQueue::open(dir.path(), roomy(), backoff),
        Err(QueueError::BadInput(_))
    ));
}

#[test]
fn a_second_open_of_the_same_queue_is_refused_while_the_first_lives() {
    let (dir, q) = open_embedded(roomy());
    match EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()) {
        Err(QueueError::Locked(path)) => assert_eq!(path, dir.path().join(QUEUE_DIR)),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("two queues opened the same log"),
    }
    drop(q);
    EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()).unwrap();
}

#[test]
fn a_failed_fsync_changes_nothing_and_leaves_no_bytes() {
    let (_d, q) = open_embedded(roomy());
    let first = enqueue(&q, "shop", Priority::Manual, "kept");
    let len = std::fs::metadata(q.log_path()).unwrap().len();
    q.fail_next_sync();
    match q.enqueue(spec("shop", Priority::Manual, "lost")) {
        Err(QueueError::Io { path, .. }) => assert_eq!(path, q.log_path()),
        other => panic!("expected an i/o error, got {other:?}"),
    }
    assert_eq!(std::fs::metadata(q.log_path()).unwrap().len(), len);
    assert_eq!(q.list(&JobFilter::default()).unwrap().len(), 1);
    // The queue goes on, and the failed enqueue's id is given again.
    let next = enqueue(&q, "shop", Priority::Manual, "next");
    assert_eq!(next.0, first.0 + 1);
    let c = claim(&q, "w", at(0)).unwrap();
    q.fail_next_sync();
    assert!(q.complete(&c, ok()).is_err());
    assert_eq!(job(&q, c.job).state, JobState::Claimed);
    q.complete(&c, ok()).unwrap();
    assert_eq!(job(&q, c.job).state, JobState::Done);
}

#[test]
fn every_change_returns_after_its_own_fsync_and_reads_write_nothing() {
    let (_d, q) = open_embedded(roomy());
    let log_len = || std::fs::metadata(q.log_path()).unwrap().len();
    let mut syncs = q.sync_count();
    let mut len = log_len();
    let mut step = |what: &str, lines: u64| {
        let (s, l) = (q.sync_count(), log_len());
        assert_eq!(s - syncs, lines, "{what}: fsyncs");
        assert_eq!(l > len, lines > 0, "{what}: log growth");
        (syncs, len) = (s, l);
    };
    let id = enqueue(&q, "shop", Priority::Manual, "x");
    step("enqueue", 1);
    let c = claim(&q, "w", at(0)).unwrap();
    step("claim", 1);
    assert!(claim(&q, "w", at(0)).is_none());
    step("claim of nothing", 0);
    q.heartbeat(&c, at(10)).unwrap();
    step("heartbeat", 1);
    // The lease (until 70) expires, and the job is claimed again: two lines.
    let c = claim(&q, "w", at(70)).unwrap();
    step("expiry and claim", 2);
    q.fail(&c, Failure::permanent("no"), at(71)).unwrap();
    step("fail", 1);
    q.retry(id).unwrap();
    step("retry", 1);
    q.pause_channel("shop", "p").unwrap();
    step("pause", 1);
    q.resume_channel("shop").unwrap();
    step("resume", 1);
    q.resume_channel("shop").unwrap();
    step("resume of a running channel", 0);
    q.list(&JobFilter::default()).unwrap();
    q.get(id).unwrap();
    q.paused_channels().unwrap();
    step("reads", 0);
    assert!(q.drop_job(JobId(77)).is_err());
    step("refused drop", 0);
    let c = claim(&q, "w", at(80)).unwrap();
    q.complete(&c, ok()).unwrap();
    step("claim and complete", 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_tokio_share_an_arc_dyn_queue_and_never_get_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut limits = roomy();
    limits.global = 1_000;
    limits.channel_default.concurrent = 1_000;
    let q: std::sync::Arc<dyn RunQueue> =
        std::sync::Arc::new(EmbeddedQueue::open(dir.path(), limits, Backoff::default()).unwrap());
    for n in 0..60 {
        enqueue(
            &*q,
            ["a", "b", "c"][n % 3],
            Priority::Manual,
            &n.to_string(),
        );
    }
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let q = q.clone();
            tokio::task::spawn_blocking(move || {
                let mut mine = Vec::new();
                while let Some(c) = q.claim(&format!("w{w}"), LEASE, at(0)).unwrap() {
                    q.complete(&c, ok()).unwrap();
                    mine.push(c.job);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let expected: Vec<JobId> = (1..=60).map(JobId).collect();
    assert_eq!(all, expected, "a job was lost or handed out twice");
    q.drop_job(JobId(1)).unwrap_err();
}

#[test]
fn a_well_formed_line_that_cannot_apply_is_corruption_named_by_line() {
    let (dir, q) = open_embedded(roomy());
    let id = enqueue(&q, "shop", Priority::Manual, "a");
    enqueue(&q, "shop", Priority::Manual, "b");
    let path = q.log_path();
    drop(q);
    // Checksum and seq are right, but job 1 was never claimed.
    let bogus = state::Change::Completed {
        job: id,
        token: "t".into(),
        at: at(0),
        outcome: ok(),
    };
    let line = log::encode(3, &[bogus]).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&line)
        .unwrap();
    match EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()) {
        Err(QueueError::Corrupt {
            path: p,
            line: 3,
            reason,
        }) => {
            assert_eq!(p, path);
            assert!(reason.contains("job 1 completed while queued"), "{reason}");
        }
        Err(e) => panic!("expected corruption at line 3, got {e}"),
        Ok(_) => panic!("an impossible change was replayed"),
    }
}

// ---------------------------------------------------------------- release

#[test]
fn a_released_job_is_queued_again_without_spending_an_attempt_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let q = EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()).unwrap();
        id = enqueue(&q, "shop", Priority::Bulk, "a");
        let c = claim(&q, "w1", at(0)).unwrap();
        assert_eq!(c.attempt, 1);
        q.release(&c, "paused by ops-anna", Some(at(60)), at(1))
            .unwrap();
        let j = job(&q, id);
        assert_eq!(j.state, JobState::Queued);
        assert_eq!(j.attempts, 0, "a release gives the attempt back");
        assert_eq!(j.last_error.as_deref(), Some("paused by ops-anna"));
        // Not before its time, and the old lease is gone.
        assert!(claim(&q, "w1", at(30)).is_none());
        assert!(matches!(
            q.complete(&c, ok()),
            Err(QueueError::LeaseLost { .. })
        ));
    }
    let q = EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()).unwrap();
    let j = job(&q, id);
    assert_eq!((j.state, j.attempts), (JobState::Queued, 0));
    let c = claim(&q, "w2", at(61)).unwrap();
    assert_eq!((c.job, c.attempt), (id, 1));
}

on_both! {
fn abandoned_claims_of_a_dead_worker_are_queued_again_and_others_kept() {
    let (_dir, q) = open(roomy());
    let a = enqueue(&q, "shop", Priority::Bulk, "a");
    let b = enqueue(&q, "shop", Priority::Bulk, "b");
    let ca = claim(&q, "hostA/serve/w1", at(0)).unwrap();
    let cb = claim(&q, "hostB/serve/w1", at(0)).unwrap();
    assert_eq!((ca.job, cb.job), (a, b));
    let gone = q.abandon("hostA/", "the daemon restarted", at(1)).unwrap();
    assert_eq!(gone, vec![a]);
    let ja = job(&q, a);
    // A crash is not the job's fault: no attempt is spent, a crash is counted.
    assert_eq!(
        (ja.state, ja.attempts, ja.crashes),
        (JobState::Queued, 0, 1)
    );
    assert!(ja.last_error.unwrap().contains("the daemon restarted"));
    assert_eq!(job(&q, b).state, JobState::Claimed);
    assert!(matches!(
        q.complete(&ca, ok()),
        Err(QueueError::LeaseLost { .. })
    ));
    q.complete(&cb, ok()).unwrap();
}
}

/// A job in flight while its daemon is killed again and again (a crash loop under a
/// service manager) is not dead-lettered by the first few crashes, even with one attempt
/// allowed; after MAX_CRASHES it is, saying why, and that survives reopening the queue.
#[test]
fn crash_abandoned_claims_spend_no_attempt_and_a_crash_loop_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()).unwrap();
    let mut s = spec("shop", Priority::Submit, "approved submit");
    s.max_attempts = 1;
    let id = q.enqueue(s).unwrap();
    for n in 1..crate::queue::MAX_CRASHES {
        let c = claim(&q, &format!("host/serve-{n}/w1"), at(n as i64)).unwrap();
        assert_eq!(c.job, id);
        q.abandon(
            &format!("host/serve-{n}/"),
            "clerk serve stopped before the run finished",
            at(n as i64),
        )
        .unwrap();
        let j = job(&q, id);
        assert_eq!(
            (j.state, j.attempts, j.crashes),
            (JobState::Queued, 0, n),
            "after {n} crashes"
        );
    }
    let n = crate::queue::MAX_CRASHES;
    claim(&q, "host/serve-last/w1", at(100)).unwrap();
    q.abandon(
        "host/serve-last/",
        "clerk serve stopped before the run finished",
        at(100),
    )
    .unwrap();
    drop(q);
    let q = EmbeddedQueue::open(dir.path(), roomy(), Backoff::default()).unwrap();
    let j = job(&q, id);
    assert_eq!((j.state, j.crashes), (JobState::Dead, n));
    assert!(j.dead_reason.unwrap().contains("crash loop"));
}

// ---------------------------------------------------------------- several nodes (PostgreSQL)

fn node(url: &str, name: &str, limits: QueueLimits) -> PgQueue {
    PgQueue::open(url, name, limits, Backoff::default()).unwrap()
}

fn sql_count(url: &str, sql: &str) -> i64 {
    let mut c = crate::db::connect(url).unwrap();
    c.query_one(sql, &[]).unwrap().get(0)
}

/// Two nodes with two workers each drain 60 jobs on three channels: no job is claimed
/// twice, every job completes once, and a channel's jobs in flight never exceed its limit
/// counted over both nodes.
#[test]
fn two_nodes_never_share_a_job_and_hold_channel_limits_together() {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let url = pg_database();
    let mut limits = roomy();
    for (ch, n) in [("shop", 1), ("mall", 2)] {
        limits.channels.insert(
            ch.into(),
            ChannelLimits {
                concurrent: n,
                min_interval: Duration::ZERO,
            },
        );
    }
    let a = Arc::new(node(&url, "node-a", limits.clone()));
    let b = Arc::new(node(&url, "node-b", limits.clone()));
    let mut ids = BTreeSet::new();
    for i in 0..60 {
        let ch = ["shop", "mall", "bazaar"][i % 3];
        ids.insert(enqueue(&*a, ch, Priority::Bulk, &format!("{i}")));
    }
    let claimed = Arc::new(Mutex::new(Vec::<JobId>::new()));
    let live: Arc<HashMap<&str, AtomicUsize>> = Arc::new(
        ["shop", "mall", "bazaar"]
            .into_iter()
            .map(|c| (c, AtomicUsize::new(0)))
            .collect(),
    );
    let peak: Arc<HashMap<&str, AtomicUsize>> = Arc::new(
        ["shop", "mall", "bazaar"]
            .into_iter()
            .map(|c| (c, AtomicUsize::new(0)))
            .collect(),
    );
    let mut threads = Vec::new();
    for (n, q) in [(0, &a), (1, &a), (2, &b), (3, &b)] {
        let (q, claimed, live, peak) = (q.clone(), claimed.clone(), live.clone(), peak.clone());
        threads.push(std::thread::spawn(move || {
            let mut idle = 0;
            while idle < 40 {
                let Some(c) = q.claim(&format!("w{n}"), LEASE, Utc::now()).unwrap() else {
                    idle += 1;
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                idle = 0;
                let ch = c.spec.channel.clone();
                let now_live = live[ch.as_str()].fetch_add(1, Ordering::SeqCst) + 1;
                peak[ch.as_str()].fetch_max(now_live, Ordering::SeqCst);
                claimed.lock().unwrap().push(c.job);
                std::thread::sleep(Duration::from_millis(3));
                live[ch.as_str()].fetch_sub(1, Ordering::SeqCst);
                q.complete(&c, ok()).unwrap();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let unique: BTreeSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 60, "every job claimed exactly once");
    assert_eq!(unique, ids);
    assert!(peak["shop"].load(Ordering::SeqCst) <= 1, "shop limit 1");
    assert!(peak["mall"].load(Ordering::SeqCst) <= 2, "mall limit 2");
    let done = a
        .list(&JobFilter {
            state: Some(JobState::Done),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(done.len(), 60);
    // Finished jobs left the hot table.
    assert_eq!(sql_count(&url, "SELECT count(*) FROM clerk_jobs"), 0);
    assert_eq!(
        sql_count(&url, "SELECT count(*) FROM clerk_jobs_finished"),
        60
    );
}

#[test]
fn min_interval_and_pauses_hold_across_nodes() {
    let url = pg_database();
    let mut limits = roomy();
    limits.channels.insert(
        "shop".into(),
        ChannelLimits {
            concurrent: 5,
            min_interval: Duration::from_secs(10),
        },
    );
    let a = node(&url, "node-a", limits.clone());
    let b = node(&url, "node-b", limits);
    for i in 0..3 {
        enqueue(&a, "shop", Priority::Bulk, &i.to_string());
    }
    assert!(claim(&a, "a/w", at(0)).is_some());
    assert!(claim(&b, "b/w", at(5)).is_none(), "5 s after a's start");
    assert!(claim(&b, "b/w", at(10)).is_some());
    a.pause_channel("shop", "incident 42").unwrap();
    assert_eq!(b.paused_channels().unwrap()["shop"].reason, "incident 42");
    assert!(claim(&b, "b/w", at(100)).is_none(), "paused on node a");
    b.resume_channel("shop").unwrap();
    assert!(a.paused_channels().unwrap().is_empty());
    assert!(claim(&a, "a/w", at(100)).is_some());
}

/// A node paused past its lease (a stopped VM) comes back: its claim fails the fencing
/// check and cannot complete, while the attempt that rescued the job can.
#[test]
fn a_node_that_lost_its_lease_is_fenced_off() {
    let url = pg_database();
    let a = node(&url, "node-a", roomy());
    let b = node(&url, "node-b", roomy());
    let id = enqueue(&a, "shop", Priority::Submit, "approved");
    let stale = claim(&a, "node-a/serve/0", at(0)).unwrap();
    a.fence(&stale, at(30)).unwrap();
    // The lease ends at 60 s; nobody else has claimed yet, but the lease is over.
    match a.fence(&stale, at(61)) {
        Err(QueueError::LeaseLost { reason, .. }) => assert!(reason.contains("lease ended")),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    let fresh = claim(&b, "node-b/serve/0", at(61)).unwrap();
    assert_eq!((fresh.job, fresh.attempt), (id, 2));
    for r in [
        a.fence(&stale, at(62)),
        a.complete(&stale, ok()),
        a.heartbeat(&stale, at(62)).map(|_| ()),
    ] {
        match r {
            Err(QueueError::LeaseLost { reason, .. }) => {
                assert!(reason.contains("claimed again (attempt 2"), "{reason}")
            }
            other => panic!("expected LeaseLost, got {other:?}"),
        }
    }
    b.fence(&fresh, at(62)).unwrap();
    b.complete(&fresh, ok()).unwrap();
    assert_eq!(job(&a, id).state, JobState::Done);
    assert_eq!(job(&a, id).outcome, Some(ok()));
}

/// A database that was never migrated is refused with what to do; migrating twice (or
/// from two nodes at once) is harmless.
#[test]
fn an_old_schema_is_refused_and_migrations_apply_once() {
    let pg = crate::sample::postgres::Postgres::shared().unwrap();
    let url = pg.fresh_database("schema").unwrap();
    match PgQueue::open(&url, "n", roomy(), Backoff::default()) {
        Err(QueueError::Database(m)) => {
            assert!(
                m.contains("version 0") && m.contains("clerk db migrate"),
                "{m}"
            )
        }
        other => panic!("expected a schema error, got {:?}", other.err()),
    }
    let (u1, u2) = (url.clone(), url.clone());
    let t1 = std::thread::spawn(move || crate::db::migrate(&u1).unwrap());
    let t2 = std::thread::spawn(move || crate::db::migrate(&u2).unwrap());
    let (m1, m2) = (t1.join().unwrap(), t2.join().unwrap());
    let applied = m1.applied.len() + m2.applied.len();
    assert_eq!(
        applied,
        crate::db::schema_version() as usize,
        "{m1:?} {m2:?}"
    );
    assert_eq!(crate::db::migrate(&url).unwrap().applied.len(), 0);
    PgQueue::open(&url, "n", roomy(), Backoff::default()).unwrap();
}

/// The queue's connection killed by the server (`pg_terminate_backend`, as an operator or a
/// failover does): the next call reconnects and works.
#[test]
fn a_terminated_connection_is_replaced() {
    let url = pg_database();
    let q = node(&url, "node-a", roomy());
    let id = enqueue(&q, "shop", Priority::Manual, "x");
    let mut admin = crate::db::connect(&url).unwrap();
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'clerk' AND pid <> pg_backend_pid() \
             AND datname = current_database()) k",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    let c = claim(&q, "w", at(0)).unwrap();
    assert_eq!(c.job, id);
    q.complete(&c, ok()).unwrap();
}

/// A job pinned to a node (a draft or submit whose approvals live in that node's journal) is
/// claimed by that node only, even when another node is idle.
#[test]
fn a_pinned_job_is_claimed_only_by_its_node() {
    let url = pg_database();
    let a = node(&url, "node-a", roomy());
    let b = node(&url, "node-b", roomy());
    let mut s = spec("shop", Priority::Submit, "approved refund");
    s.node = Some("node-a".into());
    let pinned = a.enqueue(s).unwrap();
    let free = enqueue(&a, "shop", Priority::Bulk, "lookup");
    let c = claim(&b, "node-b/serve/w0", at(0)).unwrap();
    assert_eq!(c.job, free, "node b skips the job pinned to node a");
    assert!(claim(&b, "node-b/serve/w1", at(1)).is_none());
    let c = claim(&a, "node-a/serve/w0", at(2)).unwrap();
    assert_eq!(c.job, pinned);
}
