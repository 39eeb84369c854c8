//! The configuration lifecycle of a running edge node: the files on disk are the single
//! source of truth; a [`Draft`] is validated as `check-config` would, diffed against
//! the running configuration, written atomically (other files first, the main file last)
//! and applied to the node without a restart; the configuration it replaced is kept as
//! the last known good for [`Configurator::rollback`]; every apply, reload (SIGHUP) and
//! rollback is audited (who, when, the diff) in the state directory, bounded.
//!
//! - [`files`]: named files, snapshots, atomic writes; [`diff`]: [`ConfigDiff`];
//! - [`audit`]: the audit trail; [`probe`]: one MQTT server tested with its credentials.

pub mod audit;
pub mod diff;
pub mod files;
pub mod probe;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use infra::ConfigError;
use infra::logging::Escaped;

use crate::config::Config;
use crate::node::{Applied, NodeControl};
pub use audit::AuditEntry;
pub use diff::{ConfigDiff, TagChanges};
use files::Snapshot;
pub use probe::{ProbeError, test_server};

/// The last known good configuration, in the state directory.
const LAST_GOOD: &str = "last-good.json";

/// Audit entries searched for the change that made a draft stale.
const AUDIT_SEARCHED: usize = 20;

/// The configuration as files: the main TOML text plus any other file it names that the
/// draft changes or adds (tag CSV files, uploaded TLS PEM files), keyed by the path as
/// written in the TOML, relative paths relative to the main file's directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub main: String,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// The revision of the running configuration the draft began from
    /// ([`Configurator::running`]): an apply refuses the draft once another apply, a
    /// reload or a rollback has changed the configuration since, so that nobody's change
    /// is undone unseen. `None`: a whole configuration as given, not checked.
    pub based_on: Option<u64>,
}

/// What an apply, reload or rollback did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    pub diff: ConfigDiff,
    /// What the running node did.
    pub node: Applied,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.diff, self.node)
    }
}

/// Why nothing was applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The configuration has problems; nothing was written or applied.
    #[error("{0}")]
    Invalid(ConfigError),
    /// A file could not be written (the files written before it are restored).
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// The state directory (last known good, audit) is not usable.
    #[error("state directory {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("there is no last known good configuration to roll back to")]
    NothingToRollBack,
    /// The running configuration changed since the draft began; applying it would undo
    /// that change.
    #[error(
        "the running configuration changed since this draft began ({change}); discard the draft and make the change again"
    )]
    Stale { change: String },
    /// The node did not take the configuration (it has stopped); the files were written.
    #[error("the node did not apply the configuration: {0}")]
    Node(String),
}

impl ApplyError {
    /// The configuration's problems, each with its key, for the fields they concern.
    pub fn problems(&self) -> &[infra::config_error::ConfigProblem] {
        match self {
            ApplyError::Invalid(e) => e.problems(),
            _ => &[],
        }
    }
}

impl serde::Serialize for ApplyError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("ApplyError", 2)?;
        let kind = match self {
            ApplyError::Invalid(_) => "invalid",
            ApplyError::Write { .. } => "write",
            ApplyError::State { .. } => "state",
            ApplyError::NothingToRollBack => "nothing_to_roll_back",
            ApplyError::Stale { .. } => "stale",
            ApplyError::Node(_) => "node",
        };
        st.serialize_field("kind", kind)?;
        st.serialize_field("message", &self.to_string())?;
        st.end()
    }
}

/// One configuration's lifecycle: running, last known good, validate, diff, apply,
/// rollback. Cheap to clone (Arc inside); shared by the SIGHUP handler and the UI.
#[derive(Clone)]
pub struct Configurator {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    dir: PathBuf,
    state_dir: PathBuf,
    node: NodeControl,
    /// One apply, reload or rollback at a time.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    audit: audit::Audit,
    /// The configuration applied last, for parts outside the node (the metrics listener).
    applied: tokio::sync::watch::Sender<Arc<Config>>,
}

struct State {
    running: Snapshot,
    /// Counts the changes of `running` since start (see [`Draft::based_on`]).
    revision: u64,
    config: Config,
    last_good: Option<Snapshot>,
}

impl Configurator {
    /// The lifecycle of the main file at `path` that `node` runs (its configuration as
    /// the node has it), with its state in `state_dir` (created if missing).
    pub fn new(
        path: &Path,
        state_dir: &Path,
        node: NodeControl,
    ) -> Result<Configurator, ApplyError> {
        let config = Config::clone(&node.running());
        let main = std::fs::read_to_string(path).map_err(|source| ApplyError::Write {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        let state_error = |source| ApplyError::State {
            path: state_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(state_error)?;
        let last_good = std::fs::read(state_dir.join(LAST_GOOD))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let running = files::snapshot(&dir, &main, &BTreeMap::new());
        let (applied, _) = tokio::sync::watch::channel(Arc::new(config.clone()));
        Ok(Configurator {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                dir,
                state_dir: state_dir.to_owned(),
                node,
                turn: tokio::sync::Mutex::new(()),
                state: Mutex::new(State {
                    running,
                    revision: 0,
                    config,
                    last_good,
                }),
                audit: audit::Audit::new(state_dir.join(audit::FILE)),
                applied,
            }),
        })
    }

    /// The main file this configurator writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The running configuration as it is on disk now (main text; other files it names
    /// read on demand).
    pub fn running(&self) -> Draft {
        let (revision, running_main) = {
            let state = self.state();
            (state.revision, state.running.main.clone())
        };
        let main = std::fs::read_to_string(&self.inner.path).unwrap_or(running_main);
        Draft {
            main,
            files: BTreeMap::new(),
            based_on: Some(revision),
        }
    }

    /// False when the running configuration changed since `draft` began: an apply would
    /// refuse it.
    pub fn is_current(&self, draft: &Draft) -> bool {
        draft
            .based_on
            .is_none_or(|revision| revision == self.state().revision)
    }

    /// The running configuration as checked (what the node runs).
    pub fn running_config(&self) -> Config {
        self.state().config.clone()
    }

    /// Each configuration applied from now on (by apply, reload or rollback).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Arc<Config>> {
        self.inner.applied.subscribe()
    }

    /// Is there a last known good configuration to roll back to?
    pub fn can_roll_back(&self) -> bool {
        self.state().last_good.is_some()
    }

    /// Checks a draft as `check-config` would, reading named files from the draft first
    /// and from disk otherwise.
    pub fn validate(&self, draft: &Draft) -> Result<Config, ConfigError> {
        let dir = &self.inner.dir;
        let overlay: BTreeMap<PathBuf, &[u8]> = draft
            .files
            .iter()
            .map(|(p, b)| (files::resolve(dir, p), b.as_slice()))
            .collect();
        let read = |p: &Path| match overlay.get(p) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => std::fs::read(p),
        };
        Config::load_with(&self.inner.path, &draft.main, &read)
    }

    /// What applying `draft` would change against the running configuration.
    pub fn diff(&self, draft: &Draft) -> ConfigDiff {
        let new = self.validate(draft).ok();
        let state = self.state();
        let snapshot = files::snapshot(&self.inner.dir, &draft.main, &draft.files);
        let changed_files = snapshot
            .files
            .iter()
            .filter(|(p, bytes)| state.running.files.get(*p) != Some(bytes))
            .map(|(p, _)| p.clone())
            .collect();
        ConfigDiff::between(
            &state.running.main,
            &draft.main,
            Some(&state.config),
            new.as_ref(),
            changed_files,
        )
    }

    /// Validate, write atomically (other files first, the main file last), keep the
    /// previous files as last known good, apply to the running node without a restart,
    /// audit. A draft that fails validation changes nothing.
    pub async fn apply(&self, draft: Draft, who: &str) -> Result<ApplyReport, ApplyError> {
        let _turn = self.inner.turn.lock().await;
        let result = self.apply_draft(&draft).await;
        self.record("apply", who, &result);
        result
    }

    /// SIGHUP: the files as they are on disk now, through the same validate-and-apply
    /// path (nothing to write). A configuration with problems is not applied; the
    /// running one stays and the last known good is unchanged.
    pub async fn reload(&self, who: &str) -> Result<ApplyReport, ApplyError> {
        let _turn = self.inner.turn.lock().await;
        let result = self.reload_disk().await;
        self.record("reload", who, &result);
        result
    }

    /// Apply the last known good configuration (its files restored byte for byte),
    /// audited the same way; the configuration rolled back from becomes the last known
    /// good, so a second rollback undoes the first.
    pub async fn rollback(&self, who: &str) -> Result<ApplyReport, ApplyError> {
        let _turn = self.inner.turn.lock().await;
        let result = self.roll_back().await;
        self.record("rollback", who, &result);
        result
    }

    /// The audit trail of applies, reloads and rollbacks, newest first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        self.inner.audit.newest(limit)
    }

    async fn apply_draft(&self, draft: &Draft) -> Result<ApplyReport, ApplyError> {
        if !self.is_current(draft) {
            let change = self
                .inner
                .audit
                .newest(AUDIT_SEARCHED)
                .into_iter()
                .find(|e| e.applied)
                .map_or_else(
                    || "by another apply, reload or rollback".to_owned(),
                    |e| format!("{} by {}", e.action, e.who),
                );
            return Err(ApplyError::Stale { change });
        }
        let config = self.validate(draft).map_err(ApplyError::Invalid)?;
        let diff = self.diff(draft);
        let before = self.state().running.clone();
        let mut writes: BTreeMap<PathBuf, Option<Vec<u8>>> = draft
            .files
            .iter()
            .map(|(p, b)| (p.clone(), Some(b.clone())))
            .collect();
        // The draft's files as they are now, to restore if a later write fails.
        let previous: BTreeMap<PathBuf, Option<Vec<u8>>> = writes
            .keys()
            .map(|p| {
                (
                    p.clone(),
                    std::fs::read(files::resolve(&self.inner.dir, p)).ok(),
                )
            })
            .collect();
        if let Err(e) = files::write_all(&self.inner.path, &draft.main, &writes) {
            writes = previous.clone();
            let _ = files::write_all(&self.inner.path, &before.main, &writes);
            return Err(e.into());
        }
        let mut last_good = before;
        // What the draft replaced, so that a rollback restores it too.
        for (p, bytes) in previous {
            last_good.files.entry(p).or_insert(bytes);
        }
        let running = files::snapshot(&self.inner.dir, &draft.main, &draft.files);
        self.commit(config, running, Some(last_good), diff).await
    }

    async fn reload_disk(&self) -> Result<ApplyReport, ApplyError> {
        let draft = self.running();
        let config = self.validate(&draft).map_err(ApplyError::Invalid)?;
        let diff = self.diff(&draft);
        let before = self.state().running.clone();
        let running = files::snapshot(&self.inner.dir, &draft.main, &BTreeMap::new());
        let last_good = (running != before).then_some(before);
        self.commit(config, running, last_good, diff).await
    }

    async fn roll_back(&self) -> Result<ApplyReport, ApplyError> {
        let Some(good) = self.state().last_good.clone() else {
            return Err(ApplyError::NothingToRollBack);
        };
        let overlay: BTreeMap<PathBuf, Vec<u8>> = good
            .files
            .iter()
            .filter_map(|(p, b)| b.clone().map(|b| (p.clone(), b)))
            .collect();
        let draft = Draft {
            main: good.main.clone(),
            files: overlay,
            based_on: None,
        };
        let config = self.validate(&draft).map_err(ApplyError::Invalid)?;
        let diff = self.diff(&draft);
        let before = self.state().running.clone();
        files::write_all(&self.inner.path, &good.main, &good.files)?;
        self.commit(config, good, Some(before), diff).await
    }

    /// The new files are on disk: the node takes the configuration, the state follows.
    async fn commit(
        &self,
        config: Config,
        running: Snapshot,
        last_good: Option<Snapshot>,
        diff: ConfigDiff,
    ) -> Result<ApplyReport, ApplyError> {
        if let Some(good) = &last_good {
            let bytes = serde_json::to_vec(good).unwrap_or_default();
            infra::secret::write_private_file(&self.inner.state_dir.join(LAST_GOOD), &bytes)
                .map_err(|source| ApplyError::State {
                    path: self.inner.state_dir.display().to_string(),
                    source,
                })?;
        }
        {
            let mut state = self.state();
            if state.running != running {
                state.revision += 1;
            }
            state.running = running;
            state.config = config.clone();
            if last_good.is_some() {
                state.last_good = last_good;
            }
        }
        let node = self
            .inner
            .node
            .apply(config.clone())
            .await
            .map_err(|e| ApplyError::Node(e.to_string()))?;
        self.inner.applied.send_replace(Arc::new(config));
        Ok(ApplyReport { diff, node })
    }

    fn record(&self, action: &str, who: &str, result: &Result<ApplyReport, ApplyError>) {
        match result {
            Ok(report) => {
                tracing::info!(action, who = %Escaped(who), %report, "configuration applied")
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!(action, who = %Escaped(who), problem = %line, "configuration not applied; the running one stays");
                }
            }
        }
        self.inner
            .audit
            .append(AuditEntry::new(action, who, result));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl From<files::WriteFailure> for ApplyError {
    fn from(e: files::WriteFailure) -> Self {
        ApplyError::Write {
            path: e.path.display().to_string(),
            source: e.source,
        }
    }
}
