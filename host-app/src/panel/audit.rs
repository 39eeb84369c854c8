//! The Audit log page: writes, Rebirth requests and account events, newest first,
//! filtered by user, node and time; `/audit.csv` exports the same selection.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use web::Caller;
use web::shell::Shell;

use super::PanelState;
use crate::api::audit_view;
use crate::history::{AuditQuery, AuditRecord, TimeRange};

/// Most entries one page or export shows.
const MAX_ROWS: u32 = 5_000;

/// The filters, as the form sends them (empty fields mean "any").
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub user: String,
    /// `group/node`, or `group/node/device`, or a prefix of either.
    #[serde(default)]
    pub node: String,
    /// ms since the epoch.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

pub struct AuditRow {
    pub id: i64,
    pub ts: u64,
    pub user: String,
    /// `write`, `rebirth`, or an account event (`login_failed`, ...).
    pub action: String,
    /// The metric written, the node of a Rebirth; empty for an account event.
    pub target: String,
    pub value: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    shell: Shell,
    filter: Filter,
    rows: Vec<AuditRow>,
    csv_href: String,
    error: String,
}

fn millis(field: &str, text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("`{field}` must be milliseconds since the epoch, got {text:?}"))
}

async fn select(state: &PanelState, filter: &Filter) -> Result<Vec<AuditRow>, String> {
    let from = millis("from", &filter.from)?.unwrap_or(0);
    let to = millis("to", &filter.to)?.unwrap_or(u64::MAX >> 1);
    let query = AuditQuery {
        range: TimeRange::new(from, to),
        user: Some(filter.user.trim().to_owned()).filter(|u| !u.is_empty()),
        metric: None,
        limit: MAX_ROWS,
    };
    let store = Arc::clone(&state.shared.store);
    let records: Vec<AuditRecord> = tokio::task::spawn_blocking(move || store.audit_query(&query))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let node = filter.node.trim();
    Ok(records
        .iter()
        .map(audit_view)
        .filter(|v| node.is_empty() || v.node.as_deref().is_some_and(|n| n.starts_with(node)))
        .map(|v| AuditRow {
            id: v.id,
            ts: v.ts,
            user: v.user,
            target: match (v.action.as_str(), v.metric, v.node) {
                ("rebirth", _, Some(node)) => node,
                (_, Some(metric), _) => metric,
                _ => String::new(),
            },
            action: v.action,
            value: super::value_text(&v.value, None),
            outcome: v.outcome,
            detail: v.detail.unwrap_or_default(),
        })
        .collect())
}

fn query_string(filter: &Filter) -> String {
    let enc = |s: &str| super::overview::path_segment(s.trim());
    format!(
        "user={}&node={}&from={}&to={}",
        enc(&filter.user),
        enc(&filter.node),
        enc(&filter.from),
        enc(&filter.to)
    )
}

pub async fn page(
    State(state): State<PanelState>,
    caller: Caller,
    Query(filter): Query<Filter>,
) -> Response {
    let (rows, error) = match select(&state, &filter).await {
        Ok(rows) => (rows, String::new()),
        Err(e) => (Vec::new(), e),
    };
    let page = AuditPage {
        shell: state.shell(&caller, "Audit log", "/audit", &["host.js"]),
        csv_href: format!("/audit.csv?{}", query_string(&filter)),
        filter,
        rows,
        error,
    };
    let status = if page.error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    web::shell::html(status, &page)
}

/// One CSV field, quoted when it holds a separator, quote or line break; a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it as a formula.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for ms since the epoch (proleptic Gregorian, UTC).
fn utc_text(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days to civil date: Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{milli:03}Z")
}

pub async fn csv(
    State(state): State<PanelState>,
    _caller: Caller,
    Query(filter): Query<Filter>,
) -> Response {
    let rows = match select(&state, &filter).await {
        Ok(rows) => rows,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let mut out = String::from("id,ts_ms,time_utc,user,action,target,value,outcome,detail\r\n");
    for r in &rows {
        let line = [
            r.id.to_string(),
            r.ts.to_string(),
            utc_text(r.ts),
            field(&r.user),
            field(&r.action),
            field(&r.target),
            field(&r.value),
            field(&r.outcome),
            field(&r.detail),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    let mut response = out.into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{field, utc_text};

    #[test]
    fn utc_text_is_rfc3339() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_text(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
    }
}
