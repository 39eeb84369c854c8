//! Secrets (passwords, keys, tokens): a [`Secret`] never prints, [`read_secret_file`] is
//! the one reader of secret files, with one rule set for every key that names one, and
//! [`write_private_file`] the one writer of files only their owner may read.

use std::fmt;
use std::path::{Path, PathBuf};

/// A password or other secret. Debug and Display print `<redacted>`; it has no Serialize,
/// so it cannot reach a log or a JSON answer by accident. Equality takes the same time
/// wherever two secrets differ, so comparing one with a guess leaks nothing.
#[derive(Clone)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        use subtle::ConstantTimeEq as _;
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// Read from a request body or a file; never written back out.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (a CONNECT, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret file that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
}

/// Reads a secret from `path`. Exactly one trailing line break (`\n` or `\r\n`, as editors
/// add) is not part of it; anything else is, spaces included. An empty secret is refused.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    secret_from_text(path, &text)
}

/// The secret in the text of the file at `path`, by the rules of [`read_secret_file`] (for
/// a file not yet on disk, e.g. a configuration draft's).
pub fn secret_from_text(path: &Path, text: &str) -> Result<Secret, SecretError> {
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if value.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(value))
}

/// Writes `bytes` to a new file at `path` readable and writable by its owner only (0600),
/// replacing an older file, and syncs it. The older file is removed first so the mode
/// applies even when it was wider.
#[cfg(unix)]
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask may have narrowed the mode further; 0600 is what is meant.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(content: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, content).unwrap();
        read_secret_file(&path)
            .map(|s| s.expose().to_owned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn exactly_one_trailing_line_break_is_stripped() {
        assert_eq!(read("s3cret").unwrap(), "s3cret");
        assert_eq!(read("s3cret\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\n\n").unwrap(), "s3cret\n");
        assert_eq!(read("s3cret\r\n\r\n").unwrap(), "s3cret\r\n");
        assert_eq!(read(" s3cret \n").unwrap(), " s3cret ");
    }

    #[test]
    fn an_empty_secret_is_refused_naming_the_file() {
        for empty in ["", "\n", "\r\n"] {
            let e = read(empty).unwrap_err();
            assert!(e.ends_with("pw is empty"), "{e}");
        }
        assert_eq!(read("\n\n").unwrap(), "\n");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = read_secret_file(Path::new("/nonexistent/pw")).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot read /nonexistent/pw:"),
            "{e}"
        );
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
    }

    #[test]
    fn private_files_replace_wider_ones_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
