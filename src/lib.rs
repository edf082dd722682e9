//! clerk: a back-office agent for e-commerce service teams.
//!
//! Module map (see ARCHITECTURE.md for the bird's-eye view and the invariants):
//!
//! - [`playbook`]: YAML playbooks parsed and validated into typed steps.
//! - [`channel`]: seller-center channels, operators, reviewers, sessions.
//! - [`browser`]: the only module that speaks CDP: launch and reap Chromium, the network
//!   guard, page actions, captures.
//! - [`runner`]: walks a playbook step by step inside one browser, records every action.
//! - [`evidence`]: the only module that persists: PNG files, hash-chained journal, sled index,
//!   verification and export.
//! - [`pause`]: the emergency pause: journal records folded into a board whose switches the
//!   network guard reads.
//! - [`queue`]: the durable run queue of the daemon (priorities, limits, leases, retries).
//! - [`schedule`]: schedules stored as journal records, and the rules that fire them.
//! - [`stats`]: the weekly numbers (runs, evidence, approvals, blocked requests) from the
//!   journal, and their Prometheus/OpenMetrics text.
//! - [`witness`]: a witness of a clerk log, run elsewhere: cosigns checkpoints that extend
//!   the last one it cosigned, keeps both sides of a fork (its own state directory only).
//! - [`display`]: hidden characters (bidi controls, zero-width) made visible for reviewers.
//! - [`users`]: named users of the reviewer console, roles, argon2id password hashes.
//! - [`sample`]: the sample seller center used by the demo and the tests.
//! - [`cli`]: the command-line front end (the engine never imports a front end; see
//!   `src/layering.rs`).

pub mod approval;
pub mod batch;
pub mod browser;
pub mod case;
pub mod channel;
pub mod cli;
pub mod db;
pub mod display;
pub mod evidence;
pub mod instance;
pub mod pause;
pub mod playbook;
pub mod policy;
pub mod queue;
pub mod replay;
pub mod rollback;
pub mod runner;
pub mod sample;
pub mod schedule;
pub mod serve;
pub mod stats;
pub mod url_pattern;
pub mod users;
pub mod witness;
pub mod write;

#[cfg(test)]
mod layering;
