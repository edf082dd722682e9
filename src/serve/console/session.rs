//! The console's sessions and its limit on failed logins. Sessions are kept in
//! `<data>/users/sessions.json` (mode 0600) by the SHA-256 of their cookie value, never
//! the value itself, so a daemon restart logs nobody out and the file gives nobody a
//! session. Time always comes from the caller (the engine's clock), so tests move it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::users::Role;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: TimeDelta = TimeDelta::minutes(30);
/// A session ends this long after the login, whatever happens.
pub const ABSOLUTE_TIMEOUT: TimeDelta = TimeDelta::hours(12);
/// Failed logins allowed per user from one address within [`FAIL_WINDOW`].
pub const MAX_FAILS: usize = 5;
/// Failed logins allowed per user from all addresses together within [`FAIL_WINDOW`].
pub const MAX_USER_FAILS: usize = 20;
pub const FAIL_WINDOW: TimeDelta = TimeDelta::minutes(15);
/// A session's last-seen time is written to disk at most this often.
const SAVE_EVERY: TimeDelta = TimeDelta::minutes(1);

/// A logged-in user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The user's credential stamp at login ([`crate::users::credential_stamp`]): checked on
    /// every request, so a new password, a revoked token, "log out everywhere" or a removed
    /// user ends the session at once.
    #[serde(default)]
    pub stamp: String,
    /// When `last_seen` was last written to disk.
    #[serde(skip)]
    saved: Option<DateTime<Utc>>,
}

/// Sessions by the SHA-256 of their id (the cookie's value).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// The data directory whose `users/sessions.json` keeps them (none: memory only).
    data_dir: Option<PathBuf>,
}

fn key(id: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

impl Sessions {
    /// The sessions kept in `data_dir` that are still alive at `now`.
    pub fn open(data_dir: &std::path::Path, now: DateTime<Utc>) -> Sessions {
        let path = data_dir.join("users").join("sessions.json");
        let mut map: HashMap<String, Session> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: {e}; starting with no sessions", path.display());
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        map.retain(|_, s| alive(s, now));
        for s in map.values_mut() {
            s.saved = Some(s.last_seen);
        }
        Sessions {
            map: Mutex::new(map),
            data_dir: Some(data_dir.to_owned()),
        }
    }

    fn save(&self, map: &HashMap<String, Session>) {
        let Some(dir) = &self.data_dir else { return };
        let written = serde_json::to_vec_pretty(map)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                crate::users::write_private(dir, "sessions.json", &text).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::error!("cannot keep the console's sessions: {e}");
        }
    }

    /// Starts a session; returns its id.
    pub fn create(&self, user: &str, role: Role, stamp: &str, now: DateTime<Utc>) -> String {
        let id = crate::users::random_token(32);
        let session = Session {
            user: user.to_owned(),
            role,
            stamp: stamp.to_owned(),
            csrf: crate::users::random_token(32),
            created: now,
            last_seen: now,
            saved: Some(now),
        };
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, s| alive(s, now));
            m.insert(key(&id), session);
            self.save(&m);
        }
        id
    }

    /// The live session `id` (its idle time starts again), or none: unknown, idle for
    /// [`IDLE_TIMEOUT`] or older than [`ABSOLUTE_TIMEOUT`] (then it is forgotten).
    pub fn touch(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut m = self.map.lock().ok()?;
        let k = key(id);
        let live = m.get(&k).is_some_and(|s| alive(s, now));
        if !live {
            if m.remove(&k).is_some() {
                self.save(&m);
            }
            return None;
        }
        let s = m.get_mut(&k)?;
        s.last_seen = s.last_seen.max(now);
        let due = s.saved.is_none_or(|t| now - t >= SAVE_EVERY);
        if due {
            s.saved = Some(now);
        }
        let out = s.clone();
        if due {
            self.save(&m);
        }
        Some(out)
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            if m.remove(&key(id)).is_some() {
                self.save(&m);
            }
        }
    }
}

fn alive(s: &Session, now: DateTime<Utc>) -> bool {
    now - s.last_seen < IDLE_TIMEOUT && now - s.created < ABSOLUTE_TIMEOUT
}

/// Failed logins by key: `user:NAME` (at most [`MAX_USER_FAILS`] in the window, whatever
/// the address) and `user:NAME@addr:IP` (at most [`MAX_FAILS`]): one address's failures
/// lock out only that user from that address, and many addresses still meet the per-user
/// limit. An attempt is *reserved* (counted as failed) before its password is checked, so
/// parallel attempts cannot all pass the check first; a success takes its reservation back.
#[derive(Default)]
pub struct Limiter {
    fails: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
}

/// The keys and limits of one login attempt.
pub fn login_keys(user: &str, addr: &str) -> [(String, usize); 2] {
    [
        (format!("user:{user}"), MAX_USER_FAILS),
        (format!("user:{user}@addr:{addr}"), MAX_FAILS),
    ]
}

impl Limiter {
    /// Reserves an attempt under every key, or says until when one of them is blocked.
    pub fn reserve(
        &self,
        keys: &[(String, usize)],
        now: DateTime<Utc>,
    ) -> Result<(), DateTime<Utc>> {
        let Ok(mut m) = self.fails.lock() else {
            // Fail closed: a poisoned limiter lets nobody try.
            return Err(now + FAIL_WINDOW);
        };
        let blocked = keys
            .iter()
            .filter_map(|(k, max)| {
                let v = m.get_mut(k)?;
                v.retain(|t| now - *t < FAIL_WINDOW);
                (v.len() >= *max).then(|| v[v.len() - max] + FAIL_WINDOW)
            })
            .max();
        if let Some(until) = blocked {
            return Err(until);
        }
        for (k, _) in keys {
            m.entry(k.clone()).or_default().push(now);
        }
        Ok(())
    }

    /// The reserved attempt succeeded: it does not count, and the user's failures from that
    /// address are forgotten.
    pub fn succeeded(&self, keys: &[(String, usize)], now: DateTime<Utc>) {
        if let Ok(mut m) = self.fails.lock() {
            if let Some((user_key, _)) = keys.first() {
                if let Some(v) = m.get_mut(user_key) {
                    if let Some(i) = v.iter().rposition(|t| *t == now) {
                        v.remove(i);
                    }
                }
            }
            for (k, _) in keys.iter().skip(1) {
                m.remove(k);
            }
        }
    }

    /// When the first of `keys` that is blocked may try again, if any is.
    #[cfg(test)]
    pub fn blocked_until(
        &self,
        keys: &[(String, usize)],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut m = self.fails.lock().ok()?;
        keys.iter()
            .filter_map(|(k, max)| {
                let v = m.get_mut(k)?;
                v.retain(|t| now - *t < FAIL_WINDOW);
                (v.len() >= *max).then(|| v[v.len() - max] + FAIL_WINDOW)
            })
            .max()
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
    fn sessions_survive_reopening_by_hash_and_logouts_too() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sessions::open(dir.path(), t0());
        let id = s.create("carol", Role::Reviewer, "stamp", t0());
        let gone = s.create("dave", Role::Auditor, "stamp", t0());
        s.remove(&gone);
        let text = std::fs::read_to_string(dir.path().join("users/sessions.json")).unwrap();
        assert!(!text.contains(&id), "a session id stored in clear");
        let again = Sessions::open(dir.path(), t0() + TimeDelta::minutes(5));
        let back = again
            .touch(&id, t0() + TimeDelta::minutes(5))
            .expect("kept");
        assert_eq!((back.user.as_str(), back.role), ("carol", Role::Reviewer));
        assert!(again.touch(&gone, t0()).is_none(), "a logout is kept too");
        // Idle past the limit across a restart: gone.
        let late = Sessions::open(dir.path(), t0() + TimeDelta::minutes(40));
        assert!(late.touch(&id, t0() + TimeDelta::minutes(40)).is_none());
    }

    #[test]
    fn idle_and_absolute_timeouts() {
        let s = Sessions::default();
        let id = s.create("carol", Role::Reviewer, "stamp", t0());
        assert!(s.touch("nope", t0()).is_none());
        // Active every 29 minutes: alive until the absolute limit.
        let mut t = t0();
        while t + TimeDelta::minutes(29) - t0() < ABSOLUTE_TIMEOUT {
            t += TimeDelta::minutes(29);
            assert!(s.touch(&id, t).is_some(), "alive at {t}");
        }
        assert!(s.touch(&id, t0() + ABSOLUTE_TIMEOUT).is_none());
        assert!(s.touch(&id, t0()).is_none(), "an ended session stays ended");
        let id = s.create("carol", Role::Reviewer, "stamp", t0());
        assert!(s.touch(&id, t0() + TimeDelta::minutes(29)).is_some());
        assert!(s.touch(&id, t0() + TimeDelta::minutes(59)).is_none());
    }

    #[test]
    fn five_failures_block_for_the_window() {
        let l = Limiter::default();
        let keys = login_keys("carol", "127.0.0.1");
        for i in 0..MAX_FAILS {
            assert!(
                l.reserve(&keys, t0() + TimeDelta::minutes(i as i64))
                    .is_ok(),
                "after {i}"
            );
        }
        let now = t0() + TimeDelta::minutes(5);
        assert_eq!(l.reserve(&keys, now), Err(t0() + FAIL_WINDOW));
        // Another user from the same address, and carol from another address, may try.
        assert!(l.reserve(&login_keys("dave", "127.0.0.1"), now).is_ok());
        assert!(l.reserve(&login_keys("carol", "127.0.0.2"), now).is_ok());
        assert_eq!(l.blocked_until(&keys, t0() + FAIL_WINDOW), None);
        // Many addresses still meet the per-user limit.
        let l = Limiter::default();
        for i in 0..MAX_USER_FAILS {
            assert!(l
                .reserve(&login_keys("erin", &format!("10.0.0.{i}")), t0())
                .is_ok());
        }
        assert!(l.reserve(&login_keys("erin", "10.0.1.1"), t0()).is_err());
        // A success takes its reservation back.
        let l = Limiter::default();
        let k = login_keys("fay", "127.0.0.1");
        l.reserve(&k, t0()).unwrap();
        l.succeeded(&k, t0());
        assert_eq!(l.blocked_until(&k, t0()), None);
    }
}
