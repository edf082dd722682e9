//! The weekly numbers page (`/stats`): what `clerk stats` and `/api/stats` compute, with
//! small server-rendered SVG charts (no script).

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{chrome, error, page, Authed, Chrome, C};
use crate::stats::{Numbers, Stats, StatsQuery};

#[derive(Deserialize, Default)]
pub(super) struct StatsForm {
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    channel: String,
}

/// One bar of the runs-per-day chart: ok stacked under not ok.
struct Bar {
    date: String,
    x: u32,
    ok: u64,
    not_ok: u64,
    other: u64,
    /// Heights and tops in chart pixels.
    ok_h: u32,
    ok_y: u32,
    bad_h: u32,
    bad_y: u32,
    other_h: u32,
    other_y: u32,
    /// Success rate that day in percent (of finished runs), if any finished.
    rate: Option<u32>,
    rate_y: u32,
}

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    chrome: Chrome,
    f: StatsForm,
    s: Stats,
    bars: Vec<Bar>,
    width: u32,
    max: u64,
    channels: Vec<(String, Numbers)>,
    /// Every auto-approval policy: state, figures, automatic approvals.
    policies: Vec<crate::policy::PolicyState>,
}

const CHART_H: u32 = 120;
const BAR_W: u32 = 14;

impl StatsPage {
    fn pct(&self, v: &Option<f64>) -> String {
        v.map(|r| format!("{:.1} %", r * 100.0))
            .unwrap_or_else(|| "–".into())
    }

    fn secs(&self, v: &Option<f64>) -> String {
        v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "–".into())
    }
}

fn bars(s: &Stats) -> (Vec<Bar>, u64) {
    let max = s.days.iter().map(|d| d.runs).max().unwrap_or(0).max(1);
    let h = |n: u64| ((n as f64 / max as f64) * f64::from(CHART_H)).round() as u32;
    let bars = s
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let other = d.runs.saturating_sub(d.ok + d.not_ok);
            let (ok_h, bad_h, other_h) = (h(d.ok), h(d.not_ok), h(other));
            let ok_y = CHART_H - ok_h;
            let bad_y = ok_y - bad_h.min(ok_y);
            let other_y = bad_y - other_h.min(bad_y);
            let finished = d.ok + d.not_ok;
            let rate =
                (finished > 0).then(|| ((d.ok * 100) as f64 / finished as f64).round() as u32);
            Bar {
                date: d.date.clone(),
                x: i as u32 * (BAR_W + 4),
                ok: d.ok,
                not_ok: d.not_ok,
                other,
                ok_h,
                ok_y,
                bad_h,
                bad_y,
                other_h,
                other_y,
                rate,
                rate_y: CHART_H - rate.unwrap_or(0) * CHART_H / 100,
            }
        })
        .collect();
    (bars, max)
}

pub(super) async fn stats_page(
    axum::extract::State(c): C,
    a: Authed,
    Query(f): Query<StatsForm>,
) -> Response {
    let now = c.now();
    let time = |t: &str, default| {
        if t.trim().is_empty() {
            Ok(default)
        } else {
            crate::stats::parse_time(t.trim(), now)
        }
    };
    let q = match (
        time(&f.since, now - chrono::TimeDelta::days(7)),
        time(&f.until, now),
    ) {
        (Ok(since), Ok(until)) => StatsQuery {
            since,
            until,
            channel: Some(f.channel.trim().to_owned()).filter(|c| !c.is_empty()),
        },
        (Err(e), _) | (_, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, e.to_string(), "/stats")
        }
    };
    let store = c.d.engine.store.clone();
    let engine = c.d.engine.clone();
    match tokio::task::spawn_blocking(move || {
        let s = crate::stats::compute(&store, &q, now)?;
        let mut policies = Vec::new();
        for ch in &engine.config.channels {
            policies.extend(
                crate::policy::states(&engine, ch).map_err(crate::stats::StatsError::Store)?,
            );
        }
        Ok::<_, crate::stats::StatsError>((s, policies))
    })
    .await
    {
        Ok(Ok((s, policies))) => {
            let (bars, max) = bars(&s);
            page(
                StatusCode::OK,
                &StatsPage {
                    chrome: chrome(&c, &a),
                    width: (bars.len() as u32 * (BAR_W + 4)).max(BAR_W),
                    channels: s
                        .channels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    f,
                    s,
                    bars,
                    max,
                    policies,
                },
            )
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string(), "/stats"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/stats"),
    }
}
