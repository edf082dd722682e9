//! The browser pool: warm Chromium processes shared by consecutive and concurrent runs, each
//! run in its own browser context.
//!
//! - Chromium is launched when the first run needs it, not per run. Up to
//!   [`PoolConfig::browsers`] processes exist at once; a run goes to the live process with
//!   the fewest open contexts, and a new process is launched only when every live one is
//!   busy and the limit allows it.
//! - Every run gets a browser context of its own ([`Isolation::Run`]), disposed when it ends,
//!   or, with [`Isolation::Batch`], a context kept for the next run of the same *reuse key*
//!   (channel, playbook, operator, session file) that succeeded; a failed or expired run's
//!   context is always disposed.
//! - A process that exited, closed its DevTools connection or did not answer a call is
//!   killed, reaped and forgotten; the next run gets a new one. A process that has opened
//!   served [`PoolConfig::recycle_after`] runs (in new or kept contexts) takes no more and
//!   is killed once its last run ends; a kept context serves at most
//!   [`PoolConfig::context_runs`] runs, then is disposed (the next run opens a new one, with
//!   the channel's session), so a long batch's memory is bounded.
//! - Dropping the pool (or [`Pool::shutdown`]) kills every process it holds.

use std::sync::Arc;
use std::time::Instant;

use super::{Browser, BrowserError, Chromium, LaunchOptions, Policy, Tab};
use crate::channel::StorageState;

/// How much consecutive runs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A fresh browser context per run: nothing (cookies, storage, cache, open page) carries
    /// from one run to the next.
    Run,
    /// One context per worker, reused by the next read-only run with the same channel,
    /// playbook, operator and session; replaced after any run that did not end ok. Page
    /// scripts and the cache stay warm; cookies and storage the site set carry over.
    #[default]
    Batch,
}

impl Isolation {
    pub fn as_str(&self) -> &'static str {
        match self {
            Isolation::Run => "run",
            Isolation::Batch => "batch",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "run" => Ok(Isolation::Run),
            "batch" => Ok(Isolation::Batch),
            other => Err(format!(
                "unknown isolation {other:?}: expected `run` or `batch`"
            )),
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Chromium processes at most (runs beyond that share them, one context each).
    pub browsers: usize,
    /// A process takes no new run after serving this many.
    pub recycle_after: u32,
    /// A kept context (batch isolation) serves at most this many runs.
    pub context_runs: u32,
    pub isolation: Isolation,
    /// Kept contexts (batch isolation) at most; the oldest is disposed first.
    pub keep_idle: usize,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            browsers: 1,
            recycle_after: 200,
            context_runs: 50,
            isolation: Isolation::default(),
            keep_idle: 4,
        }
    }
}

/// What the pool did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Chromium processes launched.
    pub launched: u64,
    /// Processes killed because they crashed or stopped answering.
    pub replaced: u64,
    /// Processes retired after `recycle_after` runs.
    pub recycled: u64,
    /// Kept contexts disposed after `context_runs` runs.
    pub contexts_recycled: u64,
    /// Runs that reused a kept context (batch isolation).
    pub reused: u64,
    /// Pids of the live processes.
    pub pids: Vec<i32>,
}

struct Idle {
    key: String,
    browser: Browser,
    tab: Tab,
    since: Instant,
}

#[derive(Default)]
struct State {
    browsers: Vec<Arc<Chromium>>,
    idle: Vec<Idle>,
    /// Runs holding a context now.
    active: usize,
    stats: PoolStats,
}

struct Inner {
    opts: LaunchOptions,
    config: PoolConfig,
    state: std::sync::Mutex<State>,
    /// Serializes choosing and launching, so that two runs starting together do not both
    /// launch a process when one is allowed.
    launching: tokio::sync::Mutex<()>,
}

/// A pool of warm browsers; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub fn new(opts: LaunchOptions, config: PoolConfig) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                opts,
                config,
                state: std::sync::Mutex::new(State::default()),
                launching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    pub fn launch_options(&self) -> &LaunchOptions {
        &self.inner.opts
    }

    /// A browser context for one run. With batch isolation and a `reuse` key, a context kept
    /// by an earlier successful run with the same key is handed out again (its guard reset);
    /// otherwise a new context is opened in a warm (or new) Chromium.
    pub async fn acquire(
        &self,
        policy: Policy,
        session: Option<&StorageState>,
        reuse: Option<&str>,
    ) -> Result<(Browser, Tab), BrowserError> {
        if let (Isolation::Batch, Some(key)) = (self.inner.config.isolation, reuse) {
            if let Some((mut browser, tab)) = self.take_idle(key) {
                browser.guard().begin_run();
                browser.runs += 1;
                browser.chromium().count_run();
                return Ok((browser, tab));
            }
        }
        let chromium = self.pick().await?;
        let opened = chromium.open(policy, session).await;
        match opened {
            Ok((mut browser, tab)) => {
                self.with_state(|s| s.active += 1);
                browser.runs = 1;
                chromium.count_run();
                Ok((browser, tab))
            }
            Err(e) => {
                self.forget_dead();
                Err(e)
            }
        }
    }

    /// Gives a run's context back. `keep`: the reuse key under which the context may serve
    /// the next run (batch isolation, the run ended ok), or `None` to dispose it.
    pub async fn release(&self, mut browser: Browser, tab: Tab, keep: Option<String>) {
        let chromium = browser.chromium().clone();
        let spent_context = browser.runs >= self.inner.config.context_runs.max(1);
        let wanted = keep.is_some() && self.inner.config.isolation == Isolation::Batch;
        let keep = keep.filter(|_| {
            self.inner.config.isolation == Isolation::Batch
                && chromium.alive()
                && chromium.runs_served() < self.inner.config.recycle_after
                && !spent_context
        });
        if spent_context && wanted {
            self.with_state(|s| s.stats.contexts_recycled += 1);
        }
        let mut evicted = Vec::new();
        if let Some(key) = keep {
            self.with_state(|s| {
                s.active = s.active.saturating_sub(1);
                s.idle.push(Idle {
                    key,
                    browser,
                    tab,
                    since: Instant::now(),
                });
                let cap = self.inner.config.keep_idle;
                while s.idle.len() > cap {
                    let oldest = s
                        .idle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, i)| i.since)
                        .map(|(n, _)| n)
                        .unwrap_or(0);
                    evicted.push(s.idle.remove(oldest));
                }
            });
        } else {
            drop(tab);
            browser.dispose().await;
            drop(browser);
            self.with_state(|s| s.active = s.active.saturating_sub(1));
        }
        for mut idle in evicted {
            idle.browser.dispose().await;
        }
        self.retire_spent();
        self.forget_dead();
    }

    /// Kills every process and forgets every kept context.
    pub async fn shutdown(&self) {
        let (idle, browsers) =
            self.with_state(|s| (std::mem::take(&mut s.idle), std::mem::take(&mut s.browsers)));
        drop(idle);
        for b in browsers {
            b.kill();
        }
    }

    /// What the pool did so far, and the pids of its live processes.
    pub fn stats(&self) -> PoolStats {
        self.with_state(|s| {
            let mut stats = s.stats.clone();
            stats.pids = s.browsers.iter().map(|b| b.pid()).collect();
            stats
        })
    }

    /// The live processes (for tests and status).
    pub fn browsers(&self) -> Vec<Arc<Chromium>> {
        self.with_state(|s| s.browsers.clone())
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.inner.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn take_idle(&self, key: &str) -> Option<(Browser, Tab)> {
        let mut dead = Vec::new();
        let found = self.with_state(|s| {
            // Contexts of processes that died meanwhile are dropped, not handed out.
            let (alive, gone): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut s.idle)
                .into_iter()
                .partition(|i| i.browser.chromium().alive());
            s.idle = alive;
            dead = gone;
            let n = s.idle.iter().rposition(|i| i.key == key)?;
            let idle = s.idle.remove(n);
            s.active += 1;
            s.stats.reused += 1;
            Some((idle.browser, idle.tab))
        });
        drop(dead);
        found
    }

    /// A live process with room for one more context, launching one if needed.
    async fn pick(&self) -> Result<Arc<Chromium>, BrowserError> {
        let _one_at_a_time = self.inner.launching.lock().await;
        self.forget_dead();
        // Remote browsers: one Chromium per endpoint, whatever `browsers` says.
        let remote = &self.inner.opts.remote;
        let max = if remote.is_empty() {
            self.inner.config.browsers.max(1)
        } else {
            remote.len()
        };
        let recycle = self.inner.config.recycle_after.max(1);
        let best = self.with_state(|s| {
            let usable: Vec<&Arc<Chromium>> = s
                .browsers
                .iter()
                .filter(|b| b.alive() && b.runs_served() < recycle)
                .collect();
            let best = usable.iter().min_by_key(|b| b.contexts_open()).cloned();
            match best {
                Some(b) if b.contexts_open() == 0 || s.browsers.len() >= max => Some(b.clone()),
                _ => None,
            }
        });
        if let Some(b) = best {
            return Ok(b);
        }
        // Make room: a spent process with no run left goes first.
        self.retire_spent();
        let chromium = if remote.is_empty() {
            Chromium::launch(&self.inner.opts).await?
        } else {
            // An endpoint no live connection of this pool holds (a dropped one is
            // reconnected here, with the guard installed afresh before any run).
            let held: Vec<String> = self.with_state(|s| {
                s.browsers
                    .iter()
                    .map(|b| b.endpoint_url().to_owned())
                    .collect()
            });
            let Some(endpoint) = remote.iter().find(|e| !held.contains(&e.endpoint)).cloned()
            else {
                return Err(BrowserError::Launch(
                    "every remote browser endpoint is in use".into(),
                ));
            };
            Chromium::connect(&self.inner.opts, &endpoint).await?
        };
        self.with_state(|s| {
            s.browsers.push(chromium.clone());
            s.stats.launched += 1;
        });
        Ok(chromium)
    }

    /// Kills processes that have served `recycle_after` runs and have no context open.
    fn retire_spent(&self) {
        let recycle = self.inner.config.recycle_after.max(1);
        let spent = self.with_state(|s| {
            let (spent, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut s.browsers)
                .into_iter()
                .partition(|b| b.runs_served() >= recycle && b.contexts_open() == 0);
            s.browsers = keep;
            s.stats.recycled += spent.len() as u64;
            spent
        });
        for b in spent {
            tracing::debug!(pid = b.pid(), "chromium recycled");
            b.kill();
        }
    }

    /// Kills and forgets processes that crashed or stopped answering; their kept contexts go
    /// with them.
    fn forget_dead(&self) {
        let (dead, idle) = self.with_state(|s| {
            let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut s.browsers)
                .into_iter()
                .partition(|b| !b.alive());
            s.browsers = live;
            s.stats.replaced += dead.len() as u64;
            let (gone, idle): (Vec<_>, Vec<_>) = std::mem::take(&mut s.idle)
                .into_iter()
                .partition(|i| !i.browser.chromium().alive());
            s.idle = idle;
            (dead, gone)
        });
        drop(idle);
        for b in dead {
            tracing::warn!(
                pid = b.pid(),
                "chromium crashed or stopped answering: killed, reaped, replaced"
            );
            b.kill();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            s.idle.clear();
            for b in s.browsers.drain(..) {
                b.kill();
            }
        }
    }
}
