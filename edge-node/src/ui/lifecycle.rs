//! The configuration page: the caller's draft checked as `check-config` would, its diff
//! against the running configuration, apply, discard, rollback to the last known good,
//! and the audit trail, all through [`crate::configure::Configurator`]. Apply and rollback
//! answer with a redirect to the page (post/redirect/get), so reloading it never repeats them.

use std::collections::HashMap;
use std::sync::Mutex;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use web::shell::Shell;
use web::{Caller, Role};

use super::UiState;
use super::status::ms_text;
use crate::configure::{AuditEntry, ConfigDiff};

/// Audit entries shown.
const AUDIT_SHOWN: usize = 50;

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage {
    shell: Shell,
    admin: bool,
    has_draft: bool,
    /// The running configuration changed since the draft began (apply refuses it).
    stale: bool,
    main: String,
    files: Vec<String>,
    problems: Vec<String>,
    diff: ConfigDiff,
    can_roll_back: bool,
    audit: Vec<AuditEntry>,
    /// What the last action did, or why it failed.
    outcome: Option<Result<String, String>>,
}

/// What each user's last apply or rollback did, shown once on the page it redirects to.
#[derive(Default)]
pub struct Outcomes {
    by_user: Mutex<HashMap<String, Result<String, String>>>,
}

impl Outcomes {
    fn put(&self, user: &str, outcome: Result<String, String>) {
        self.by_user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_owned(), outcome);
    }

    fn take(&self, user: &str) -> Option<Result<String, String>> {
        self.by_user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user)
    }
}

impl ConfigPage {
    fn when(&self, ms: &u64) -> String {
        ms_text(*ms)
    }
}

fn render(state: &UiState, caller: &Caller, outcome: Option<Result<String, String>>) -> Response {
    let draft = state.draft(caller);
    let problems = match state.configurator.validate(&draft) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    };
    let status = match &outcome {
        Some(Err(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    let page = ConfigPage {
        shell: state.shell(caller, "Configuration", "/config"),
        admin: caller.has_role(Role::Admin),
        has_draft: state.drafts.has(&caller.user),
        stale: !state.configurator.is_current(&draft),
        diff: state.configurator.diff(&draft),
        files: draft
            .files
            .keys()
            .map(|p| p.display().to_string())
            .collect(),
        main: draft.main,
        problems,
        can_roll_back: state.configurator.can_roll_back(),
        audit: state.configurator.audit(AUDIT_SHOWN),
        outcome,
    };
    web::shell::html(status, &page)
}

pub async fn page(State(state): State<UiState>, caller: Caller) -> Response {
    let outcome = state.outcomes.take(&caller.user);
    render(&state, &caller, outcome)
}

/// Keeps `outcome` for the caller's next view of the page and sends them there.
fn show_on_page(state: &UiState, caller: &Caller, outcome: Result<String, String>) -> Response {
    state.outcomes.put(&caller.user, outcome);
    Redirect::to("/config").into_response()
}

pub async fn apply(State(state): State<UiState>, caller: Caller) -> Response {
    if !state.drafts.has(&caller.user) {
        return show_on_page(&state, &caller, Err("You have no draft to apply.".into()));
    }
    let draft = state.draft(&caller);
    let outcome = match state.configurator.apply(draft, &caller.user).await {
        Ok(report) => {
            state.drafts.discard(&caller.user);
            tracing::info!(user = %infra::logging::Escaped(&caller.user), %report, "configuration applied");
            Ok(format!("Applied: {report}"))
        }
        Err(e) => Err(format!("Not applied: {e}")),
    };
    show_on_page(&state, &caller, outcome)
}

pub async fn rollback(State(state): State<UiState>, caller: Caller) -> Response {
    let outcome = match state.configurator.rollback(&caller.user).await {
        Ok(report) => {
            tracing::info!(user = %infra::logging::Escaped(&caller.user), %report, "configuration rolled back");
            Ok(format!("Rolled back: {report}"))
        }
        Err(e) => Err(format!("Not rolled back: {e}")),
    };
    show_on_page(&state, &caller, outcome)
}

pub async fn discard(State(state): State<UiState>, caller: Caller) -> Response {
    state.drafts.discard(&caller.user);
    Redirect::to("/config").into_response()
}
