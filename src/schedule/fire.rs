//! The firing rules, as pure functions of the schedule, its high-water mark and `now`.
//!
//! - The **high-water mark** is the latest slot recorded for the schedule (`schedule_fired`,
//!   `schedule_skipped`, `schedule_missed`), or the time it was added or last resumed. Only
//!   slots strictly after it are ever considered, so a slot is dealt with at most once, also
//!   after a restart (the mark is rebuilt from the journal).
//! - A slot is **due** while less than the grace window has passed since it. All due slots
//!   fire **once**, as the latest of them (`covers` says how many it stands for): after an
//!   outage of 10 minutes an every-5-minutes schedule fires one run, not two.
//! - Older slots are **missed**: reported as one range (first, last, count), recorded as one
//!   `schedule_missed` record per decision.
//! - When the caller says the previous firing is still running, the due slot is **skipped**
//!   (recorded, so it is not fired later either).
//! - A paused schedule does nothing; resuming moves the mark to the resume time, so the slots
//!   of the pause are neither fired nor reported missed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::trigger::Trigger;
use super::Schedule;
use crate::evidence::{timestamp, Event};

/// Grace window when the caller has no other: a slot up to 15 minutes old still fires.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);

/// Most slots counted one by one in a range (missed, or covered by one firing); a larger
/// count is reported as this number with `count_capped`.
pub const MAX_COUNT: u64 = 10_000;

/// Slots that passed outside the grace window without firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedSlots {
    pub first: DateTime<Utc>,
    /// The last missed slot (the new high-water mark if nothing is due).
    pub last: DateTime<Utc>,
    /// Slots from `first` to `last`, exact up to [`MAX_COUNT`].
    pub count: u64,
    pub count_capped: bool,
}

/// What to do about the due slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing is due (or the schedule is paused).
    Wait,
    /// Fire once for `slot`, the latest due slot; `covers` due slots in all.
    Fire { slot: DateTime<Utc>, covers: u64 },
    /// Record `slot` as skipped (the previous firing is still running).
    Skip {
        slot: DateTime<Utc>,
        covers: u64,
        reason: String,
    },
}

/// The outcome of [`decide`]: record `missed` (if any) and carry out `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub missed: Option<MissedSlots>,
    pub action: Action,
}

impl Decision {
    /// Nothing to record, nothing to do.
    pub fn wait() -> Decision {
        Decision {
            missed: None,
            action: Action::Wait,
        }
    }

    /// The high-water mark once this decision is recorded (`None`: unchanged).
    pub fn high_water(&self) -> Option<DateTime<Utc>> {
        match &self.action {
            Action::Fire { slot, .. } | Action::Skip { slot, .. } => Some(*slot),
            Action::Wait => self.missed.as_ref().map(|m| m.last),
        }
    }

    /// The `schedule_missed` record to append first, if slots were missed.
    pub fn missed_event(&self, name: &str, at: DateTime<Utc>) -> Option<Event> {
        self.missed.as_ref().map(|m| Event::ScheduleMissed {
            name: name.to_owned(),
            first_slot: timestamp(m.first),
            slot: timestamp(m.last),
            count: m.count,
            count_capped: m.count_capped,
            at: timestamp(at),
        })
    }

    /// The `schedule_skipped` record, when the action is a skip.
    pub fn skipped_event(&self, name: &str, at: DateTime<Utc>) -> Option<Event> {
        match &self.action {
            Action::Skip {
                slot,
                covers,
                reason,
            } => Some(Event::ScheduleSkipped {
                name: name.to_owned(),
                slot: timestamp(*slot),
                covers: *covers,
                reason: reason.clone(),
                at: timestamp(at),
            }),
            _ => None,
        }
    }

    /// The `schedule_fired` record, when the action is a firing: `job_ids` are the queue jobs
    /// the firing enqueued.
    pub fn fired_event(&self, name: &str, job_ids: &[u64], at: DateTime<Utc>) -> Option<Event> {
        match &self.action {
            Action::Fire { slot, covers } => Some(Event::ScheduleFired {
                name: name.to_owned(),
                slot: timestamp(*slot),
                covers: *covers,
                job_ids: job_ids.to_vec(),
                at: timestamp(at),
            }),
            _ => None,
        }
    }
}

/// Slots of `trigger` in `(after, until]`: the first, the last and how many.
fn range(
    trigger: &Trigger,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>, u64, bool)> {
    if until <= after {
        return None;
    }
    let first = trigger.next_after(after).filter(|f| *f <= until)?;
    let last = trigger.last_in(after, until).unwrap_or(first);
    if let Trigger::Every(every) = trigger {
        let step = every.as_secs().max(1);
        let span = u64::try_from((last - first).num_seconds()).unwrap_or(0);
        let count = span / step + 1;
        return Some((first, last, count.min(MAX_COUNT), count > MAX_COUNT));
    }
    let mut count = 1;
    let mut cursor = first;
    while cursor < last {
        if count >= MAX_COUNT {
            return Some((first, last, MAX_COUNT, true));
        }
        match trigger.next_after(cursor) {
            Some(next) if next <= last => {
                count += 1;
                cursor = next;
            }
            _ => break,
        }
    }
    Some((first, last, count, false))
}

/// What `schedule` should do at `now`.
///
/// `last_slot` is the schedule's latest recorded slot (fired, skipped or missed; see
/// [`Schedule::last_slot`]); slots at or before it, or at or before the time the schedule was
/// added or last resumed, are never considered again. `grace` is how old a slot may be and
/// still fire (it must exceed the time between two calls, or slots fall through to missed).
/// `previous_running` says the schedule's previous firing has not finished: a due slot is
/// then skipped.
pub fn decide(
    schedule: &Schedule,
    last_slot: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace: Duration,
    previous_running: bool,
) -> Decision {
    if schedule.paused {
        return Decision::wait();
    }
    let mark = match last_slot {
        Some(s) if s > schedule.active_since => s,
        _ => schedule.active_since,
    };
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let cutoff = now.checked_sub_signed(grace).unwrap_or(mark);
    let missed =
        range(&schedule.trigger, mark, cutoff).map(|(first, last, count, capped)| MissedSlots {
            first,
            last,
            count,
            count_capped: capped,
        });
    let due_after = if cutoff > mark { cutoff } else { mark };
    let action = match range(&schedule.trigger, due_after, now) {
        None => Action::Wait,
        Some((_, slot, covers, _)) if previous_running => Action::Skip {
            slot,
            covers,
            reason: "the previous firing is still running".to_owned(),
        },
        Some((_, slot, covers, _)) => Action::Fire { slot, covers },
    };
    Decision { missed, action }
}

/// The first slot at which `schedule` would fire after `t` (for `schedule list` and `show`):
/// `None` while it is paused or when its expression matches no later date.
pub fn next_after(schedule: &Schedule, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if schedule.paused {
        return None;
    }
    let from = [Some(t), Some(schedule.active_since), schedule.last_slot]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(t);
    schedule.trigger.next_after(from)
}
