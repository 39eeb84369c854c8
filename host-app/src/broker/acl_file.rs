//! Reads a Mosquitto-style ACL file (`acl_file = "..."`): grants for `custom` accounts
//! and for anonymous clients.
//!
//! ```text
//! # Lines before any `user` line grant to anonymous clients.
//! topic read spBv1.0/STATE/+
//! user dashboard
//! topic read spBv1.0/Plant1/#
//! topic readwrite dashboards/%u/#
//! # `pattern` lines grant to every custom account (and custom anonymous clients).
//! pattern write clients/%c/status
//! ```
//!
//! `read` grants subscribing, `write` publishing, `readwrite` (the default) both; `deny`
//! refuses both for topics and filters it covers, whatever else grants them. `%u` and `%c`
//! stand for the username and client id.

use std::collections::HashMap;
use std::path::Path;

use infra::{ConfigError, Problems};

use super::topic_filter::validate;

const KEY: &str = "broker.embedded.acl_file";

/// The grants of one ACL file.
#[derive(Debug, Default)]
pub struct AclFile {
    /// After `user <name>` lines.
    pub users: HashMap<String, FileGrants>,
    /// Before any `user` line.
    pub anonymous: FileGrants,
    /// `pattern` lines.
    pub patterns: FileGrants,
}

/// Topic filters granted for publishing and subscribing, and those denied.
#[derive(Debug, Default)]
pub struct FileGrants {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    pub deny: Vec<String>,
    /// The line of the first grant (or of the `user` line), for problems.
    pub line: usize,
}

impl FileGrants {
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty() && self.deny.is_empty()
    }

    fn grant(&mut self, access: Access, filter: &str, line: usize) {
        if self.line == 0 {
            self.line = line;
        }
        let filter = filter.to_owned();
        match access {
            Access::Read => self.subscribe.push(filter),
            Access::Write => self.publish.push(filter),
            Access::ReadWrite => {
                self.subscribe.push(filter.clone());
                self.publish.push(filter);
            }
            Access::Deny => self.deny.push(filter),
        }
    }
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl AclFile {
    pub fn load(path: &Path) -> Result<AclFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(KEY, format!("cannot read {}: {e}", path.display())))?;
        AclFile::parse(&text)
    }

    /// Parses the file's text; every bad line is reported by its number.
    pub fn parse(text: &str) -> Result<AclFile, ConfigError> {
        let mut problems = Problems::new();
        let mut file = AclFile::default();
        let mut user: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (word, rest) = split_word(trimmed);
            match word {
                "user" if !rest.is_empty() => {
                    let grants = file.users.entry(rest.to_owned()).or_default();
                    if grants.line == 0 {
                        grants.line = line;
                    }
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (access, filter) = match split_word(rest) {
                        ("read", f) => (Access::Read, f),
                        ("write", f) => (Access::Write, f),
                        ("readwrite", f) => (Access::ReadWrite, f),
                        ("deny", f) => (Access::Deny, f),
                        _ => (Access::ReadWrite, rest),
                    };
                    if let Err(e) = validate(filter) {
                        problems.push(KEY, format!("line {line}: topic {filter:?} {e}"));
                        continue;
                    }
                    let grants = match (word, &user) {
                        ("pattern", _) => &mut file.patterns,
                        (_, Some(name)) => file.users.entry(name.clone()).or_default(),
                        (_, None) => &mut file.anonymous,
                    };
                    grants.grant(access, filter, line);
                }
                _ => problems.push(
                    KEY,
                    format!(
                        "line {line}: expected `user NAME`, \
                         `topic [read|write|readwrite|deny] FILTER` \
                         or `pattern [read|write|readwrite|deny] FILTER`"
                    ),
                ),
            }
        }
        problems.finish(file)
    }
}

/// The first word of `s` and the rest, trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_users_anonymous_and_patterns() {
        let file = AclFile::parse(
            "# comment\n\
             topic read spBv1.0/STATE/+\n\
             \n\
             user dash board\n\
             topic spBv1.0/Plant1/#\n\
             topic write out/x\n\
             topic deny out/secret\n\
             pattern read in/%c/#\n",
        )
        .unwrap();
        assert_eq!(file.anonymous.subscribe, ["spBv1.0/STATE/+"]);
        assert!(file.anonymous.publish.is_empty());
        let dash = &file.users["dash board"];
        assert_eq!(dash.subscribe, ["spBv1.0/Plant1/#"]);
        assert_eq!(dash.publish, ["spBv1.0/Plant1/#", "out/x"]);
        assert_eq!(dash.deny, ["out/secret"]);
        assert_eq!(dash.line, 4);
        assert_eq!(file.patterns.subscribe, ["in/%c/#"]);
    }

    #[test]
    fn names_every_bad_line() {
        let e = AclFile::parse("user a\ntopic deny x+\nbogus\ntopic read a/#/b\nuser\n")
            .unwrap_err()
            .to_string();
        for expected in [
            "line 2: topic",
            "line 3: expected",
            "line 4: topic",
            "line 5: expected",
        ] {
            assert!(e.contains(expected), "{expected} in {e}");
        }
    }
}
