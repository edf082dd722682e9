//! The console's sessions (in memory: a restart logs everyone out) and its limit on failed
//! logins. Time always comes from the caller (the engine's clock), so tests move it.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use crate::users::Role;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: TimeDelta = TimeDelta::minutes(30);
/// A session ends this long after the login, whatever happens.
pub const ABSOLUTE_TIMEOUT: TimeDelta = TimeDelta::hours(12);
/// Failed logins allowed per user and per address within [`FAIL_WINDOW`].
pub const MAX_FAILS: usize = 5;
pub const FAIL_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Sessions by id (the cookie's value).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session; returns its id.
    pub fn create(&self, user: &str, role: Role, now: DateTime<Utc>) -> String {
        let id = crate::users::random_token(32);
        let session = Session {
            user: user.to_owned(),
            role,
            csrf: crate::users::random_token(32),
            created: now,
            last_seen: now,
        };
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, s| alive(s, now));
            m.insert(id.clone(), session);
        }
        id
    }

    /// The live session `id` (its idle time starts again), or none: unknown, idle for
    /// [`IDLE_TIMEOUT`] or older than [`ABSOLUTE_TIMEOUT`] (then it is forgotten).
    pub fn touch(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut m = self.map.lock().ok()?;
        let live = m.get(id).is_some_and(|s| alive(s, now));
        if !live {
            m.remove(id);
            return None;
        }
        let s = m.get_mut(id)?;
        s.last_seen = s.last_seen.max(now);
        Some(s.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}

fn alive(s: &Session, now: DateTime<Utc>) -> bool {
    now - s.last_seen < IDLE_TIMEOUT && now - s.created < ABSOLUTE_TIMEOUT
}

/// Failed logins by key (`user:NAME`, `addr:IP`).
#[derive(Default)]
pub struct Limiter {
    fails: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
}

impl Limiter {
    /// When the first of `keys` that is blocked may try again, if any is.
    pub fn blocked_until(&self, keys: &[String], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut m = self.fails.lock().ok()?;
        keys.iter()
            .filter_map(|k| {
                let v = m.get_mut(k)?;
                v.retain(|t| now - *t < FAIL_WINDOW);
                (v.len() >= MAX_FAILS).then(|| v[v.len() - MAX_FAILS] + FAIL_WINDOW)
            })
            .max()
    }

    /// Counts a failed login against each key.
    pub fn fail(&self, keys: &[String], now: DateTime<Utc>) {
        if let Ok(mut m) = self.fails.lock() {
            for k in keys {
                let v = m.entry(k.clone()).or_default();
                v.retain(|t| now - *t < FAIL_WINDOW);
                v.push(now);
            }
        }
    }

    /// Forgets the failures of one key (a user who logged in).
    pub fn clear(&self, key: &str) {
        if let Ok(mut m) = self.fails.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn idle_and_absolute_timeouts() {
        let s = Sessions::default();
        let id = s.create("carol", Role::Reviewer, t0());
        assert!(s.touch("nope", t0()).is_none());
        // Active every 29 minutes: alive until the absolute limit.
        let mut t = t0();
        while t + TimeDelta::minutes(29) - t0() < ABSOLUTE_TIMEOUT {
            t += TimeDelta::minutes(29);
            assert!(s.touch(&id, t).is_some(), "alive at {t}");
        }
        assert!(s.touch(&id, t0() + ABSOLUTE_TIMEOUT).is_none());
        assert!(s.touch(&id, t0()).is_none(), "an ended session stays ended");
        let id = s.create("carol", Role::Reviewer, t0());
        assert!(s.touch(&id, t0() + TimeDelta::minutes(29)).is_some());
        assert!(s.touch(&id, t0() + TimeDelta::minutes(59)).is_none());
    }

    #[test]
    fn five_failures_block_for_the_window() {
        let l = Limiter::default();
        let keys = vec!["user:carol".to_owned(), "addr:127.0.0.1".to_owned()];
        for i in 0..MAX_FAILS {
            assert_eq!(l.blocked_until(&keys, t0()), None, "after {i}");
            l.fail(&keys, t0() + TimeDelta::minutes(i as i64));
        }
        let now = t0() + TimeDelta::minutes(5);
        assert_eq!(l.blocked_until(&keys, now), Some(t0() + FAIL_WINDOW));
        assert!(l
            .blocked_until(&["addr:127.0.0.1".to_owned()], now)
            .is_some());
        assert_eq!(l.blocked_until(&["user:dave".to_owned()], now), None);
        assert_eq!(l.blocked_until(&keys, t0() + FAIL_WINDOW), None);
    }
}
