//! The audit trail of configuration changes: one JSON line per apply, reload and
//! rollback (who, when, the diff, what the node did or why nothing was applied), in the
//! state directory, the oldest lines dropped past [`MAX_ENTRIES`].

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{ApplyError, ApplyReport};

/// The audit file's name in the state directory.
pub const FILE: &str = "config-audit.jsonl";

/// Entries kept; the file is cut back to this many when it holds twice as many.
pub const MAX_ENTRIES: usize = 1000;

/// One apply, reload or rollback.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The account (or `SIGHUP`) that asked.
    pub who: String,
    /// `apply`, `reload` or `rollback`.
    pub action: String,
    /// True when the configuration was applied.
    pub applied: bool,
    /// The diff and what the node did, or why nothing was applied.
    pub outcome: serde_json::Value,
    /// The same in one line for people (the UI's audit list).
    #[serde(default)]
    pub summary: String,
}

impl AuditEntry {
    pub fn new(action: &str, who: &str, result: &Result<ApplyReport, ApplyError>) -> AuditEntry {
        let summary = match result {
            Ok(report) => report.to_string(),
            Err(e) => e.to_string(),
        };
        let outcome = match result {
            Ok(report) => serde_json::to_value(report),
            Err(e) => serde_json::to_value(e),
        }
        .unwrap_or_default();
        AuditEntry {
            at_ms: infra::clock::now_ms(),
            who: who.to_owned(),
            action: action.to_owned(),
            applied: result.is_ok(),
            outcome,
            summary,
        }
    }
}

impl std::fmt::Display for AuditEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.applied { "applied" } else { "refused" };
        write!(
            f,
            "{} {} by {}: {verdict}",
            self.at_ms,
            self.action,
            infra::logging::Escaped(&self.who)
        )
    }
}

/// The audit file; appends are serialised.
pub(super) struct Audit {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Audit {
    pub(super) fn new(path: PathBuf) -> Audit {
        Audit {
            path,
            lock: Mutex::new(()),
        }
    }

    pub(super) fn append(&self, entry: AuditEntry) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(mut line) = serde_json::to_string(&entry) else {
            return;
        };
        line.push('\n');
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_data()));
        if let Err(e) = appended {
            tracing::error!(file = %self.path.display(), error = %e, "configuration audit not written");
            return;
        }
        let lines = self.lines();
        if lines.len() > 2 * MAX_ENTRIES {
            let kept = lines[lines.len() - MAX_ENTRIES..].join("\n") + "\n";
            if let Err(e) = super::files::write_atomic(&self.path, kept.as_bytes()) {
                tracing::warn!(file = %self.path.display(), error = %e, "configuration audit not cut back");
            }
        }
    }

    /// The newest `limit` entries, newest first.
    pub(super) fn newest(&self, limit: usize) -> Vec<AuditEntry> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.lines()
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str(l).ok())
            .take(limit)
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
