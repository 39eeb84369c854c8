//! What the cross-process tests share: where the workspace is and how to reach the
//! independent implementations (Python tools in the project's venv) they talk to.

pub mod linksim;
pub mod process;

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (this crate sits in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// A script under `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    workspace_root().join("tests").join("python").join(name)
}

/// The Python interpreter of the venv that `tests/run.sh` fills (pysparkplug, pymodbus).
///
/// Panics with the fix when it is missing: an interop test that cannot reach its peer
/// must fail, not pass by skipping.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SYSTEM_TESTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv").join("bin").join("python"));
    assert!(
        path.exists(),
        "no Python venv at {}: run `bash tests/run.sh` once (it installs pysparkplug and pymodbus)",
        path.display()
    );
    path
}

/// `python tests/python/<script> <args>`, ready to run.
pub fn python_command(script: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(python_script(script));
    cmd
}
