//! The daemon's checkpoint signer: signs a checkpoint of the journal when `[log]
//! checkpoint_records` records were appended since the last one, or `checkpoint_every` has
//! passed and anything was appended; once at start and once at shutdown.
//!
//! A refusal (the journal no longer extends the last signed checkpoint: the tamper alarm) is
//! logged, recorded by the store, kept for `/api/status`, and tried again only after
//! `checkpoint_every`, so an alarm does not flood the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Daemon;
use crate::channel::parse_duration;

/// How often the journal's size is looked at (reading only what was appended).
const POLL: Duration = Duration::from_millis(500);

/// Signs one checkpoint now, off the runtime; keeps the alarm state.
pub(super) async fn sign(d: &Arc<Daemon>) -> Option<u64> {
    let store = d.engine.store.clone();
    let signed = tokio::task::spawn_blocking(move || store.checkpoint_now()).await;
    let mut alarm = d.tlog_alarm.lock().unwrap_or_else(|e| e.into_inner());
    match signed {
        Ok(Ok(Some(s))) => {
            *alarm = None;
            Some(s.checkpoint.checkpoint.size)
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "no checkpoint signed");
            *alarm = Some(e.to_string());
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "the checkpoint task failed");
            None
        }
    }
}

pub(super) async fn run(d: Arc<Daemon>) {
    let log = &d.engine.config.log;
    let every = parse_duration(&log.checkpoint_every).unwrap_or(Duration::from_secs(60));
    let records = log.checkpoint_records.max(1);
    let mut signed_size = sign(&d).await;
    let mut last_try = Instant::now();
    let mut stopping = d.stopping.subscribe();
    loop {
        if *stopping.borrow() {
            return;
        }
        let _ = tokio::time::timeout(POLL, stopping.changed()).await;
        if *stopping.borrow() {
            return;
        }
        let store = d.engine.store.clone();
        let size = match tokio::task::spawn_blocking(move || store.tree_head()).await {
            Ok(Ok((size, _))) => size,
            Ok(Err(e)) => {
                if last_try.elapsed() >= every {
                    tracing::error!(error = %e, "cannot read the journal's tree");
                    *d.tlog_alarm.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    last_try = Instant::now();
                }
                continue;
            }
            Err(_) => continue,
        };
        let behind = size.saturating_sub(signed_size.unwrap_or(0));
        let alarmed = d
            .tlog_alarm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let due = if alarmed {
            last_try.elapsed() >= every
        } else {
            behind >= records || (behind > 0 && last_try.elapsed() >= every)
        };
        if due {
            if let Some(s) = sign(&d).await {
                signed_size = Some(s);
            }
            last_try = Instant::now();
        }
    }
}
