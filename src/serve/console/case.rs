//! The case view (`/cases/{case}`): every run, screenshot and approval of one case
//! reference in time order, and its auditor bundle as a `.tar` download.

use askama::Template;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{chrome, error, page, Authed, Chrome, C};
use crate::serve::views::{self, CaseView};

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage {
    chrome: Chrome,
    v: CaseView,
    /// The case reference as a URL path segment.
    path: String,
}

pub(super) async fn case_page(
    axum::extract::State(c): C,
    a: Authed,
    Path(case): Path<String>,
) -> Response {
    let store = c.d.engine.store.clone();
    let wanted = case.clone();
    match tokio::task::spawn_blocking(move || views::case(&store, &wanted)).await {
        Ok(Ok(Some(v))) => page(
            StatusCode::OK,
            &CasePage {
                chrome: chrome(&c, &a),
                path: super::encode(&v.case_ref),
                v,
            },
        ),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no run has case reference {case}"),
            "/runs",
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/runs"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/runs"),
    }
}

/// `GET /cases/{case}/bundle.tar`: the auditor bundle of the case, as a read-only copy (a
/// GET changes nothing: no checkpoint is recorded).
pub(super) async fn bundle(
    axum::extract::State(c): C,
    _a: Authed,
    Path(case): Path<String>,
) -> Response {
    send_bundle(&c, case, None).await
}

/// `POST /cases/{case}/bundle.tar`: the same bundle, the export recorded as a checkpoint
/// naming who exported (as `clerk export` does). Every role may export.
pub(super) async fn bundle_recorded(
    axum::extract::State(c): C,
    a: Authed,
    Path(case): Path<String>,
    axum::Form(f): axum::Form<super::CsrfForm>,
) -> Response {
    if !a.csrf_ok(&f.csrf) {
        return super::forbidden("missing or wrong CSRF token");
    }
    send_bundle(&c, case, Some(a.s.user.clone())).await
}

async fn send_bundle(c: &super::Console, case: String, by: Option<String>) -> Response {
    let store = c.d.engine.store.clone();
    let wanted = case.clone();
    match tokio::task::spawn_blocking(move || views::case_bundle(&store, &wanted, by.as_deref()))
        .await
    {
        Ok(Ok(tar)) => tar_response(&case, tar),
        Ok(Err(e)) => error(
            StatusCode::NOT_FOUND,
            format!("cannot export case {case}: {e}"),
            "/runs",
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), "/runs"),
    }
}

/// A tar download named after the case.
pub(in crate::serve) fn tar_response(case: &str, tar: Vec<u8>) -> Response {
    let name: String = case
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"case-{name}.tar\""),
            ),
        ],
        tar,
    )
        .into_response()
}
