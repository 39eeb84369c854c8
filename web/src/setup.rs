//! First-run setup: while no admin exists, the only way in is a one-time
//! setup token, written to a file only the service's user can read (mode
//! 0600) and handed back to the application to log where the installer
//! looks. The token's hash is held in memory; it works once, and a restart
//! before setup issues a new one.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::secret::Secret;

/// Writes `token` to `path` with mode 0600, replacing any older file.
pub(crate) fn write_token_file(path: &Path, token: &Secret) -> std::io::Result<()> {
    // A fresh file, so the mode applies even when an older one was wider.
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{}", token.expose())?;
    file.sync_all()
}

/// Removes the token file once setup is done; a missing file is fine.
pub(crate) fn remove_token_file(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
