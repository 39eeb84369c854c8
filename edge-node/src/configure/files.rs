//! The configuration as files on disk: which files a main TOML names, their contents at
//! one moment (a [`Snapshot`], kept as the last known good), and atomic writes (a
//! temporary file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The main file's text and every file it names, each as it was (`None`: absent).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub main: String,
    /// Keyed by the path as written in the TOML.
    pub files: BTreeMap<PathBuf, Option<Vec<u8>>>,
}

/// The files a main TOML text names: tag CSVs, password files, TLS PEM files (not the
/// bdSeq state file nor the store: those are data, not configuration).
pub fn named_files(main: &str) -> Vec<PathBuf> {
    let Ok(doc) = main.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |v: Option<&toml::Value>| {
        if let Some(s) = v.and_then(toml::Value::as_str) {
            out.push(PathBuf::from(s));
        }
    };
    let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned();
    if let Some(modbus) = table(doc.get("modbus"))
        && let Some(files) = modbus.get("tag_files").and_then(toml::Value::as_array)
    {
        for f in files {
            push(Some(f));
        }
    }
    if let Some(mqtt) = table(doc.get("mqtt")) {
        push(mqtt.get("password_file"));
        let servers = mqtt.get("servers").and_then(toml::Value::as_array);
        for server in servers
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_table)
        {
            for key in [
                "password_file",
                "ca_file",
                "client_cert_file",
                "client_key_file",
            ] {
                push(server.get(key));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A path as written, resolved against the main file's directory.
pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        dir.join(path)
    }
}

/// The main text and the current contents of every file it names, `overlay` first.
pub fn snapshot(dir: &Path, main: &str, overlay: &BTreeMap<PathBuf, Vec<u8>>) -> Snapshot {
    let files = named_files(main)
        .into_iter()
        .map(|p| {
            let bytes = match overlay.get(&p) {
                Some(b) => Some(b.clone()),
                None => std::fs::read(resolve(dir, &p)).ok(),
            };
            (p, bytes)
        })
        .collect();
    Snapshot {
        main: main.to_owned(),
        files,
    }
}

/// Writes `bytes` to `path` atomically: the old content or the new, never a mix. A file
/// that exists keeps its permissions; a new one is the owner's only (it may hold a key).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        let permissions = match std::fs::metadata(path) {
            Ok(m) => m.permissions(),
            Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o600),
        };
        file.set_permissions(permissions)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes the other files first and the main file last, so a reader of the main file
/// never sees it name a file not yet written. `None` removes a file.
pub fn write_all(
    main_path: &Path,
    main: &str,
    files: &BTreeMap<PathBuf, Option<Vec<u8>>>,
) -> Result<(), WriteFailure> {
    let dir = main_path.parent().unwrap_or(Path::new("."));
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteFailure { path, source }
    };
    for (path, bytes) in files {
        let full = resolve(dir, path);
        match bytes {
            Some(bytes) => {
                if std::fs::read(&full).ok().as_deref() != Some(bytes.as_slice()) {
                    write_atomic(&full, bytes).map_err(failed(&full))?;
                }
            }
            None => match std::fs::remove_file(&full) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(failed(&full)(e));
                }
                _ => {}
            },
        }
    }
    if std::fs::read_to_string(main_path).ok().as_deref() != Some(main) {
        write_atomic(main_path, main.as_bytes()).map_err(failed(main_path))?;
    }
    Ok(())
}

/// A file that could not be written or removed.
#[derive(Debug)]
pub struct WriteFailure {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_are_the_configuration_files() {
        let main = r#"
[sparkplug]
state_file = "bdseq"
[mqtt]
password_file = "pw"
[[mqtt.servers]]
url = "mqtts://a"
ca_file = "ca.pem"
password_file = "pw-a"
[modbus]
tag_files = ["tags.csv"]
[store]
path = "q.sqlite"
"#;
        let names: Vec<String> = named_files(main)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(names, ["ca.pem", "pw", "pw-a", "tags.csv"]);
    }

    #[test]
    fn atomic_writes_keep_permissions_and_leave_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
