//! The policy gate: low-risk writes approved automatically, once that automation is earned.
//!
//! A channel declares auto-approval policies (`[[channel.auto_approve]]`): which playbook,
//! which write (method, URL glob) and conditions on the write's decoded body fields
//! (`max`/`min` amounts, `equals`, `one_of`). A policy is judged by the engine on the
//! **held write** of a draft (what the page actually tried to send, as the approval
//! records it), never on the playbook's inputs or claims, and only for a draft whose case
//! matched. It is **eligible** only once earned: at least `min_reviewed` human decisions on
//! drafts of the same playbook and write in the last `within_days` days, with at least
//! `min_pass_percent` of them approved.
//!
//! An automatic approval is an `approval_decided` record like any other, decided by
//! `policy:NAME@HASH` (the first 16 hex digits of the SHA-256 of the policy's canonical
//! JSON) with the figures it relied on in its note; the submit that follows goes through the
//! same exact-write check, guard, evidence and pause as any. A person rejecting a draft the
//! policy's conditions cover suspends the policy (`policy_suspended`) until the channel's
//! owner (or an admin) enables it again (`policy_enabled`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::approval::{self, Approval, ApprovalRequest, Ledger};
use crate::channel::{AutoApprove, Channel};
use crate::evidence::{timestamp, Event, StoreError};
use crate::write::{Body, Write};

/// The prefix of a policy's reviewer name in `approval_decided`.
pub const REVIEWER_PREFIX: &str = "policy:";

/// `policy:NAME@HASH`: how a policy signs its decisions.
pub fn policy_id(p: &AutoApprove) -> String {
    let value = serde_json::to_value(p).unwrap_or(serde_json::Value::Null);
    let hash = hex::encode(Sha256::digest(approval::canonical_json(&value).as_bytes()));
    format!("{REVIEWER_PREFIX}{}@{}", p.name, &hash[..16])
}

/// Why a write is outside a policy, or `Ok` with what held.
pub fn covers(p: &AutoApprove, w: &Write, base: &url::Url) -> Result<Vec<String>, String> {
    if !w.method.eq_ignore_ascii_case(&p.method) {
        return Err(format!("method {} is not {}", w.method, p.method));
    }
    let url = crate::url_pattern::glob(&p.url, base).map_err(|e| e.to_string())?;
    if !url.is_match(&w.url) {
        return Err(format!("{} is not {}", w.url, p.url));
    }
    let mut held = Vec::new();
    for (name, rule) in &p.fields {
        let value = field(w, name).ok_or_else(|| format!("the write has no field {name}"))?;
        if let Some(eq) = &rule.equals {
            if value != *eq {
                return Err(format!("{name} is {value:?}, not {eq:?}"));
            }
            held.push(format!("{name} = {value}"));
        }
        if !rule.one_of.is_empty() {
            if !rule.one_of.contains(&value) {
                return Err(format!("{name} {value:?} is not one of {:?}", rule.one_of));
            }
            held.push(format!("{name} = {value}"));
        }
        for (bound, is_max) in [(&rule.max, true), (&rule.min, false)] {
            let Some(bound) = bound else { continue };
            let (v, b) = match (crate::case::amount(&value), crate::case::amount(bound)) {
                (Ok(v), Ok(b)) => (v.minor, b.minor),
                (Err(e), _) => return Err(format!("{name}: {e}")),
                (_, Err(e)) => return Err(format!("the policy's bound for {name}: {e}")),
            };
            if (is_max && v > b) || (!is_max && v < b) {
                return Err(format!(
                    "{name} {value} is {} {bound}",
                    if is_max { "above" } else { "below" }
                ));
            }
            held.push(format!(
                "{name} {value} {} {bound}",
                if is_max { "<=" } else { ">=" }
            ));
        }
    }
    Ok(held)
}

/// A top-level body field as text (JSON strings as they are, numbers as written).
fn field(w: &Write, name: &str) -> Option<String> {
    match &w.body {
        Body::Json { value } => {
            let v = crate::write::restore_json(value);
            match v.get(name)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        }
        Body::Form { fields } => fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

/// What a policy's eligibility rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Human decisions on drafts of the same playbook and write in the window.
    pub reviewed: u64,
    pub approved: u64,
    pub within_days: u64,
    /// `approved * 100 / reviewed`, rounded down.
    pub pass_percent: Option<u64>,
}

impl Figures {
    pub fn describe(&self) -> String {
        format!(
            "{} human-reviewed drafts in {} days, {} approved ({})",
            self.reviewed,
            self.within_days,
            self.approved,
            self.pass_percent
                .map(|p| format!("{p}%"))
                .unwrap_or_else(|| "no pass rate".into())
        )
    }

    pub fn earned(&self, p: &AutoApprove) -> bool {
        self.reviewed >= p.min_reviewed && self.pass_percent.unwrap_or(0) >= p.min_pass_percent
    }
}

/// A policy's state: suspended by a rejection, until enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyState {
    pub channel: String,
    pub name: String,
    pub policy_id: String,
    /// `Some((by, why, at))` while suspended.
    pub suspended: Option<(String, String, String)>,
    pub figures: Figures,
    /// What earning it takes: this many human-reviewed drafts in the window ...
    pub min_reviewed: u64,
    /// ... this share of them approved.
    pub min_pass_percent: u64,
    pub earned: bool,
    /// Drafts it approved (all time).
    pub auto_approved: u64,
}

/// Everything the journal says about a channel's policies and the reviews they rest on.
struct History {
    /// approval id -> its request (for this channel).
    requests: BTreeMap<String, (String, ApprovalRequest)>,
    /// (approval id, reviewer, approved, at)
    decisions: Vec<(String, String, bool, String)>,
    /// policy name -> suspended (by, why, at) or None after an enable.
    state: BTreeMap<String, Option<(String, String, String)>>,
}

fn history(ledger: &impl Ledger, channel: &str) -> Result<History, StoreError> {
    let mut h = History {
        requests: BTreeMap::new(),
        decisions: Vec::new(),
        state: BTreeMap::new(),
    };
    for r in ledger.store().records()? {
        match r.event {
            Event::ApprovalRequested {
                approval_id,
                request,
                channel: c,
                ..
            } if c == channel => {
                if let Ok(req) = serde_json::from_str::<ApprovalRequest>(&request) {
                    h.requests.insert(approval_id, (r.ts, req));
                }
            }
            Event::ApprovalDecided {
                approval_id,
                decision,
                reviewer,
                ..
            } => h
                .decisions
                .push((approval_id, reviewer, decision == "approved", r.ts)),
            Event::PolicySuspended {
                channel: c,
                policy,
                reviewer,
                reason,
                at,
                ..
            } if c == channel => {
                h.state.insert(policy, Some((reviewer, reason, at)));
            }
            Event::PolicyEnabled {
                channel: c, policy, ..
            } if c == channel => {
                h.state.insert(policy, None);
            }
            _ => {}
        }
    }
    Ok(h)
}

fn figures(h: &History, p: &AutoApprove, base: &url::Url, now: DateTime<Utc>) -> Figures {
    let since = timestamp(now - chrono::Duration::days(p.within_days as i64));
    let mut reviewed = 0;
    let mut approved = 0;
    for (id, reviewer, ok, at) in &h.decisions {
        if reviewer.starts_with(REVIEWER_PREFIX) || at.as_str() < since.as_str() {
            continue;
        }
        let Some((_, req)) = h.requests.get(id) else {
            continue;
        };
        let same_shape = req.content.playbook == p.playbook
            && req.content.request.as_ref().is_some_and(|w| {
                w.method.eq_ignore_ascii_case(&p.method)
                    && crate::url_pattern::glob(&p.url, base).is_ok_and(|g| g.is_match(&w.url))
            });
        if same_shape {
            reviewed += 1;
            if *ok {
                approved += 1;
            }
        }
    }
    Figures {
        reviewed,
        approved,
        within_days: p.within_days,
        pass_percent: (reviewed > 0).then(|| approved * 100 / reviewed),
    }
}

/// The state of every policy of a channel.
pub fn states(ledger: &impl Ledger, channel: &Channel) -> Result<Vec<PolicyState>, StoreError> {
    let h = history(ledger, &channel.id)?;
    let now = ledger.now();
    Ok(channel
        .auto_approve
        .iter()
        .map(|p| {
            let id = policy_id(p);
            let f = figures(&h, p, &channel.base_url, now);
            PolicyState {
                channel: channel.id.clone(),
                name: p.name.clone(),
                auto_approved: h
                    .decisions
                    .iter()
                    .filter(|(_, reviewer, ok, _)| *ok && *reviewer == id)
                    .count() as u64,
                policy_id: id,
                suspended: h.state.get(&p.name).cloned().flatten(),
                earned: f.earned(p),
                figures: f,
                min_reviewed: p.min_reviewed,
                min_pass_percent: p.min_pass_percent,
            }
        })
        .collect())
}

/// Judges a fresh draft: when a policy of its channel covers its held write, is earned and
/// not suspended, and the draft's case matched, records the approval as that policy's
/// decision and returns the policy id. Blocking (reads the journal).
pub fn consider(ledger: &impl Ledger, approval_id: &str) -> Result<Option<String>, StoreError> {
    let Ok(a) = approval::load(ledger, approval_id) else {
        return Ok(None);
    };
    if a.state != approval::ApprovalState::Pending {
        return Ok(None);
    }
    let Ok(channel) = ledger.config().channel(&a.request.content.channel) else {
        return Ok(None);
    };
    let channel = channel.clone();
    let policies: Vec<&AutoApprove> = channel
        .auto_approve
        .iter()
        .filter(|p| p.playbook == a.request.content.playbook)
        .collect();
    let Some(write) = a.request.content.request.clone() else {
        return Ok(None);
    };
    if policies.is_empty() {
        return Ok(None);
    }
    // Only a draft whose case the page confirmed.
    let matched = ledger
        .store()
        .run(&a.request.run_id)?
        .and_then(|d| d.case)
        .is_some_and(|c| c.verdict == "matched");
    if !matched {
        tracing::info!(
            approval = approval_id,
            "no automatic approval: the draft's case was not matched"
        );
        return Ok(None);
    }
    let h = history(ledger, &channel.id)?;
    for p in policies {
        let id = policy_id(p);
        if let Some(Some((by, _, at))) = h.state.get(&p.name) {
            tracing::info!(approval = approval_id, policy = %id, "policy suspended by {by} at {at}: left for review");
            continue;
        }
        let held = match covers(p, &write, &channel.base_url) {
            Ok(held) => held,
            Err(why) => {
                tracing::debug!(approval = approval_id, policy = %id, "not covered: {why}");
                continue;
            }
        };
        let f = figures(&h, p, &channel.base_url, ledger.now());
        if !f.earned(p) {
            tracing::info!(approval = approval_id, policy = %id, "not earned yet: {}", f.describe());
            continue;
        }
        let note = format!(
            "approved automatically by {id}: {}; needs {} at {}%; {}",
            f.describe(),
            p.min_reviewed,
            p.min_pass_percent,
            held.join(", ")
        );
        ledger.store().append(Event::ApprovalDecided {
            approval_id: approval_id.to_owned(),
            decision: "approved".into(),
            reviewer: id.clone(),
            note: Some(note),
            draft_hash: a.request.draft_hash.clone(),
            decided_at: timestamp(ledger.now()),
        })?;
        return Ok(Some(id));
    }
    Ok(None)
}

/// After a person decided an approval: a rejection of a draft that a policy of the channel
/// covers suspends that policy (recorded with the reviewer and the approval).
pub fn after_decision(ledger: &impl Ledger, a: &Approval) -> Result<Vec<String>, StoreError> {
    let Some(d) = &a.decision else {
        return Ok(vec![]);
    };
    if d.decision == "approved" || d.reviewer.starts_with(REVIEWER_PREFIX) {
        return Ok(vec![]);
    }
    let Ok(channel) = ledger.config().channel(&a.request.content.channel) else {
        return Ok(vec![]);
    };
    let Some(write) = &a.request.content.request else {
        return Ok(vec![]);
    };
    let mut suspended = Vec::new();
    for p in channel
        .auto_approve
        .iter()
        .filter(|p| p.playbook == a.request.content.playbook)
    {
        if covers(p, write, &channel.base_url).is_ok() {
            let id = policy_id(p);
            ledger.store().append(Event::PolicySuspended {
                channel: channel.id.clone(),
                policy: p.name.clone(),
                policy_id: id.clone(),
                approval_id: a.request.approval_id.clone(),
                reviewer: d.reviewer.clone(),
                reason: format!(
                    "{} rejected approval {}, a write this policy would have approved",
                    d.reviewer, a.request.approval_id
                ),
                at: timestamp(ledger.now()),
            })?;
            tracing::warn!(policy = %id, approval = %a.request.approval_id, "policy suspended by a rejection");
            suspended.push(id);
        }
    }
    Ok(suspended)
}

/// Why a policy cannot be enabled by someone.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("channel {channel} has no policy {name} (its policies: {known})")]
    Unknown {
        channel: String,
        name: String,
        known: String,
    },
    #[error(
        "{user} may not enable policies of channel {channel}: only its owner {owner} or an admin"
    )]
    NotOwner {
        user: String,
        channel: String,
        owner: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Enables a policy again (after a suspension), as `user`: the channel's owner, or anyone
/// the front end vouches for as an admin.
pub fn enable(
    ledger: &impl Ledger,
    channel: &Channel,
    name: &str,
    user: &str,
    admin: bool,
) -> Result<String, PolicyError> {
    let Some(p) = channel.auto_approve.iter().find(|p| p.name == name) else {
        return Err(PolicyError::Unknown {
            channel: channel.id.clone(),
            name: name.to_owned(),
            known: channel
                .auto_approve
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    if !admin && user != channel.owner {
        let _ = ledger.store().append(Event::Refused {
            action: "policy_enable".into(),
            approval_id: None,
            run_id: None,
            user: user.to_owned(),
            reason: format!(
                "{user} is not the owner of channel {} nor an admin",
                channel.id
            ),
            at: timestamp(ledger.now()),
        });
        return Err(PolicyError::NotOwner {
            user: user.to_owned(),
            channel: channel.id.clone(),
            owner: channel.owner.clone(),
        });
    }
    let id = policy_id(p);
    ledger.store().append(Event::PolicyEnabled {
        channel: channel.id.clone(),
        policy: p.name.clone(),
        policy_id: id.clone(),
        user: user.to_owned(),
        at: timestamp(ledger.now()),
    })?;
    Ok(id)
}

/// A person's decision on an approval ([`approval::decide`]), then its effect on the
/// channel's policies ([`after_decision`]): what every front end calls.
pub fn decide(
    ledger: &impl Ledger,
    id: &str,
    reviewer: &str,
    approve: bool,
    note: Option<String>,
) -> Result<Approval, approval::ApprovalError> {
    let a = approval::decide(ledger, id, reviewer, approve, note)?;
    if let Err(e) = after_decision(ledger, &a) {
        tracing::error!(approval = id, "recording a policy suspension failed: {e}");
        return Err(approval::ApprovalError::Store(e.to_string()));
    }
    Ok(a)
}
