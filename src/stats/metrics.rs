//! The numbers as OpenMetrics text (what `GET /metrics` of the daemon serves), encoded by
//! `prometheus-client` from a snapshot: the journal's counts ([`Stats`], over whatever
//! period the caller computed; the daemon uses all time so counters only grow) and the
//! daemon's live state ([`LiveMetrics`]).
//!
//! | metric                                         | type      | labels          |
//! |------------------------------------------------|-----------|-----------------|
//! | `clerk_runs_total`                             | counter   | channel, status |
//! | `clerk_blocked_requests_total`                 | counter   | channel, kind   |
//! | `clerk_approvals_decided_total`                | counter   | channel, decision |
//! | `clerk_submits_refused_total`                  | counter   | channel         |
//! | `clerk_submits_mismatched_total`               | counter   | channel         |
//! | `clerk_submits_duplicate_total`                | counter   | channel         |
//! | `clerk_job_retries_total`                      | counter   | channel         |
//! | `clerk_dead_letters_total`                     | counter   | channel         |
//! | `clerk_session_expiries_total`                 | counter   | channel         |
//! | `clerk_approvals_expired_total`                | counter   | channel         |
//! | `clerk_approvals_by_policy_total`              | counter   | channel, policy |
//! | `clerk_schedule_slots_missed_total`            | counter   | (overall)       |
//! | `clerk_case_conflicts_total`                   | counter   | channel         |
//! | `clerk_case_unverifiable_total`                | counter   | channel         |
//! | `clerk_case_writes_prevented_total`            | counter   | channel         |
//! | `clerk_approvals_pending`                      | gauge     | channel         |
//! | `clerk_approval_oldest_pending_age_seconds`    | gauge     | channel         |
//! | `clerk_queue_depth`                            | gauge     | channel, state  |
//! | `clerk_paused`                                 | gauge     | (global, 0/1)   |
//! | `clerk_channel_paused`                         | gauge     | channel (0/1)   |
//! | `clerk_pool_browsers`, `clerk_pool_contexts`, `clerk_runs_in_flight` | gauge | |
//! | `clerk_run_duration_seconds`                   | histogram | channel         |
//! | `clerk_channel_max_pages`                      | gauge     | channel (installation-wide limit) |
//! | `clerk_cluster_node_heartbeat_age_seconds`     | gauge     | node (cluster mode) |
//! | `clerk_cluster_node_pages`, `clerk_cluster_node_busy` | gauge | node (cluster mode) |
//! | `clerk_evidence_not_copied`                    | gauge     | (with `[cluster] evidence`) |

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::{Numbers, Stats};

/// What the daemon knows that the journal does not: filled by `clerk serve` at each scrape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveMetrics {
    /// Jobs by channel, then by state (`queued`, `claimed`, `dead`, ...).
    pub queue_depth: BTreeMap<String, BTreeMap<String, u64>>,
    /// The global emergency pause is on.
    pub paused: bool,
    /// Per channel: paused or not.
    pub channels_paused: BTreeMap<String, bool>,
    /// Chromium processes in the pool.
    pub pool_browsers: u64,
    /// Browser contexts open in the pool.
    pub pool_contexts: u64,
    /// Runs executing now.
    pub runs_in_flight: u64,
    /// Each channel's limit of runs at once (for the whole installation in cluster mode).
    pub channel_max_pages: BTreeMap<String, u64>,
    /// Cluster mode: every node's last heartbeat age, pages and runs in flight.
    pub nodes: Vec<LiveNode>,
    /// With `[cluster] evidence`: blobs the last copy pass could not copy.
    pub evidence_not_copied: Option<u64>,
}

/// One cluster node as `/metrics` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveNode {
    pub node: String,
    pub heartbeat_age_secs: f64,
    pub pages: u64,
    pub busy: u64,
}

/// Errors of [`render_metrics`].
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics")]
    Encode(#[from] std::fmt::Error),
}

/// Renders the OpenMetrics text exposition (`# EOF` at the end).
pub fn render_metrics(stats: &Stats, live: &LiveMetrics) -> Result<String, MetricsError> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        channels: stats.channels.clone(),
        missed_slots: stats.overall.missed_slots,
        live: live.clone(),
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One scrape's values.
#[derive(Debug)]
struct Snapshot {
    channels: BTreeMap<String, Numbers>,
    /// Overall only (schedule records name no channel).
    missed_slots: u64,
    live: LiveMetrics,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Snapshot {
    fn counter(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        rows: Vec<(Labels<'_>, u64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in rows {
            metric
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&value, None)?;
        }
        Ok(())
    }

    fn gauge(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        rows: Vec<(Labels<'_>, f64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in rows {
            metric.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    /// One counter row per channel.
    fn per_channel(&self, value: impl Fn(&Numbers) -> u64) -> Vec<(Labels<'_>, u64)> {
        self.channels
            .iter()
            .map(|(c, n)| (vec![("channel", c.as_str())], value(n)))
            .collect()
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let mut rows = Vec::new();
        for (c, n) in &self.channels {
            for (status, v) in &n.runs_by_outcome {
                rows.push((
                    vec![("channel", c.as_str()), ("status", status.as_str())],
                    *v,
                ));
            }
        }
        self.counter(e, "clerk_runs", "Runs by channel and outcome.", rows)?;
        let mut rows = Vec::new();
        for (c, n) in &self.channels {
            for (kind, v) in &n.blocked_by_kind {
                rows.push((vec![("channel", c.as_str()), ("kind", kind.as_str())], *v));
            }
        }
        self.counter(
            e,
            "clerk_blocked_requests",
            "Requests the network guard failed, by kind.",
            rows,
        )?;
        let mut rows = Vec::new();
        for (c, n) in &self.channels {
            rows.push((
                vec![("channel", c.as_str()), ("decision", "approved")],
                n.approvals.approved,
            ));
            rows.push((
                vec![("channel", c.as_str()), ("decision", "rejected")],
                n.approvals.rejected,
            ));
        }
        self.counter(
            e,
            "clerk_approvals_decided",
            "Approval decisions by outcome.",
            rows,
        )?;
        self.counter(
            e,
            "clerk_submits_refused",
            "Submits refused (approval not usable, or not what was approved).",
            self.per_channel(|n| n.submits.refused),
        )?;
        self.counter(
            e,
            "clerk_submits_mismatched",
            "Submits refused because the form or the write was not the approved one.",
            self.per_channel(|n| n.submits.mismatched),
        )?;
        self.counter(
            e,
            "clerk_submits_duplicate",
            "Repeated sends prevented: a second write of a submit, or an approval used again.",
            self.per_channel(|n| n.submits.duplicates),
        )?;
        self.counter(
            e,
            "clerk_job_retries",
            "Queue jobs retried after a transient failure.",
            self.per_channel(|n| n.retries),
        )?;
        self.counter(
            e,
            "clerk_dead_letters",
            "Queue jobs dead-lettered.",
            self.per_channel(|n| n.dead_letters),
        )?;
        self.counter(
            e,
            "clerk_session_expiries",
            "Runs that found the channel's session expired.",
            self.per_channel(|n| n.session_expiries),
        )?;
        self.counter(
            e,
            "clerk_approvals_expired",
            "Approvals that expired before anyone decided them.",
            self.per_channel(|n| n.approvals.expired),
        )?;
        let mut by_policy = Vec::new();
        for (c, n) in &self.channels {
            for (p, v) in &n.approvals.decided_by_policy {
                by_policy.push((vec![("channel", c.as_str()), ("policy", p.as_str())], *v));
            }
        }
        self.counter(
            e,
            "clerk_approvals_by_policy",
            "Approvals decided by an auto-approval policy (the rest were decided by people).",
            by_policy,
        )?;
        self.counter(
            e,
            "clerk_schedule_slots_missed",
            "Scheduled slots that passed without a firing.",
            vec![(Vec::new(), self.missed_slots)],
        )?;
        self.counter(
            e,
            "clerk_case_conflicts",
            "Runs whose case claims the page contradicted.",
            self.per_channel(|n| n.cases.conflicts),
        )?;
        self.counter(
            e,
            "clerk_case_unverifiable",
            "Runs whose case claims could not be compared with the page.",
            self.per_channel(|n| n.cases.unverifiable),
        )?;
        self.counter(
            e,
            "clerk_case_writes_prevented",
            "Drafts and submits stopped before filling anything because the case did not match.",
            self.per_channel(|n| n.cases.writes_prevented),
        )?;
        Self::gauge(
            e,
            "clerk_approvals_pending",
            "Approvals waiting for a reviewer.",
            self.channels
                .iter()
                .map(|(c, n)| (vec![("channel", c.as_str())], n.approvals.pending as f64))
                .collect(),
        )?;
        Self::gauge(
            e,
            "clerk_approval_oldest_pending_age_seconds",
            "Age of the oldest approval waiting for a reviewer.",
            self.channels
                .iter()
                .filter_map(|(c, n)| {
                    n.approvals
                        .oldest_pending_age_secs
                        .map(|age| (vec![("channel", c.as_str())], age))
                })
                .collect(),
        )?;
        let mut rows = Vec::new();
        for (c, states) in &self.live.queue_depth {
            for (state, v) in states {
                rows.push((
                    vec![("channel", c.as_str()), ("state", state.as_str())],
                    *v as f64,
                ));
            }
        }
        Self::gauge(
            e,
            "clerk_queue_depth",
            "Queue jobs by channel and state.",
            rows,
        )?;
        Self::gauge(
            e,
            "clerk_channel_max_pages",
            "Runs of a channel at once (max_pages; installation-wide in cluster mode).",
            self.live
                .channel_max_pages
                .iter()
                .map(|(c, n)| (vec![("channel", c.as_str())], *n as f64))
                .collect(),
        )?;
        if let Some(n) = self.live.evidence_not_copied {
            Self::gauge(
                e,
                "clerk_evidence_not_copied",
                "Evidence blobs the last copy pass could not copy to object storage.",
                vec![(Vec::new(), n as f64)],
            )?;
        }
        if !self.live.nodes.is_empty() {
            let rows = |f: fn(&LiveNode) -> f64| {
                self.live
                    .nodes
                    .iter()
                    .map(|n| (vec![("node", n.node.as_str())], f(n)))
                    .collect::<Vec<_>>()
            };
            Self::gauge(
                e,
                "clerk_cluster_node_heartbeat_age_seconds",
                "Seconds since a cluster node's last heartbeat in the database.",
                rows(|n| n.heartbeat_age_secs),
            )?;
            Self::gauge(
                e,
                "clerk_cluster_node_pages",
                "Runs at once a cluster node may execute.",
                rows(|n| n.pages as f64),
            )?;
            Self::gauge(
                e,
                "clerk_cluster_node_busy",
                "Runs a cluster node executes now.",
                rows(|n| n.busy as f64),
            )?;
        }
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        Self::gauge(
            e,
            "clerk_channel_paused",
            "A channel is paused (1) or not (0).",
            self.live
                .channels_paused
                .iter()
                .map(|(c, p)| (vec![("channel", c.as_str())], flag(*p)))
                .collect(),
        )?;
        for (name, help, value) in [
            (
                "clerk_paused",
                "The global emergency pause is on (1) or off (0).",
                u64::from(self.live.paused),
            ),
            (
                "clerk_pool_browsers",
                "Chromium processes in the pool.",
                self.live.pool_browsers,
            ),
            (
                "clerk_pool_contexts",
                "Browser contexts open in the pool.",
                self.live.pool_contexts,
            ),
            (
                "clerk_runs_in_flight",
                "Runs executing now.",
                self.live.runs_in_flight,
            ),
        ] {
            let gauge: Gauge<i64> = Gauge::default();
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            gauge.encode(metric)?;
        }
        let mut metric = e.encode_descriptor(
            "clerk_run_duration_seconds",
            "Run durations, from the run's first record to its run_finished record.",
            None,
            MetricType::Histogram,
        )?;
        for (c, n) in &self.channels {
            let h = &n.run_durations;
            let mut buckets: Vec<(f64, u64)> = h
                .bounds_secs
                .iter()
                .copied()
                .zip(h.counts.iter().copied())
                .collect();
            buckets.push((f64::INFINITY, h.counts.last().copied().unwrap_or(0)));
            let labels: Labels<'_> = vec![("channel", c.as_str())];
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &buckets, None)?;
        }
        Ok(())
    }
}
