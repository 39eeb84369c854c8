//! How a configuration problem is reported, the same way by both applications: each
//! problem names its key path (`mqtt.servers[1].url`, `modbus.devices[3].unit_id`) and,
//! where known, the file and the line and column; every problem of a file is collected
//! and shown one per line:
//!
//! ```text
//! /etc/edge-node.toml: mqtt.keep_alive_s: must be 1..=65535 seconds
//! /etc/edge-node.toml:12:7: mqtt.servers[0].url: invalid type: integer `5`, expected a string
//! /etc/tags.csv:4:6: type: unknown variant `float`
//! ```
//!
//! A line and column are 1-based; in a CSV file the column is the field (spreadsheet
//! column) number.

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// Where in a file a problem is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key path, e.g. `mqtt.servers[1].url`; empty when the problem is the whole file.
    pub key: String,
    pub message: String,
    /// The file as the user named it.
    pub file: Option<String>,
    pub position: Option<Position>,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, message: impl fmt::Display) -> ConfigProblem {
        ConfigProblem {
            key: key.into(),
            message: message.to_string(),
            file: None,
            position: None,
        }
    }

    /// Names the file the problem is in.
    pub fn in_file(mut self, file: impl fmt::Display) -> ConfigProblem {
        self.file = Some(file.to_string());
        self
    }

    /// Places the problem at a 1-based line and column.
    pub fn at(mut self, line: u64, column: u64) -> ConfigProblem {
        self.position = Some(Position { line, column });
        self
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = self.file.clone().unwrap_or_default();
        if let Some(Position { line, column }) = self.position {
            if !place.is_empty() {
                place.push(':');
            }
            place.push_str(&format!("{line}:{column}"));
        }
        if !place.is_empty() {
            write!(f, "{place}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a configuration: at least one problem, one per line when shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// One problem at `key`.
    pub fn new(key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
        ConfigProblem::new(key, message).into()
    }

    /// A file that cannot be read.
    pub fn unreadable(file: &Path, error: &std::io::Error) -> ConfigError {
        ConfigProblem::new("", format!("cannot read: {error}"))
            .in_file(file.display())
            .into()
    }

    /// A TOML document `text` that does not parse or does not fit its schema, placed at
    /// the line and column of the error and named by the key path found there.
    pub fn from_toml(error: &toml::de::Error, text: &str) -> ConfigError {
        let message = error.message().trim_end().to_owned();
        let mut problem = ConfigProblem::new("", message);
        if let Some(span) = error.span() {
            let (line, column) = line_and_column(text, span.start);
            problem = problem.at(line, column);
            problem.key = key_at(text, span);
        }
        problem.into()
    }

    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    /// The key of every problem, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.key.as_str()).collect()
    }

    /// Both errors' problems, `self`'s first.
    pub fn join(mut self, other: ConfigError) -> ConfigError {
        self.problems.extend(other.problems);
        self
    }

    /// Names `file` on every problem that names no file yet.
    pub fn in_file(mut self, file: impl fmt::Display) -> ConfigError {
        let file = file.to_string();
        for problem in &mut self.problems {
            problem.file.get_or_insert_with(|| file.clone());
        }
        self
    }

    /// Prefixes every key with `prefix` and a dot, for a section read on its own.
    pub fn under(mut self, prefix: &str) -> ConfigError {
        for problem in &mut self.problems {
            problem.key = if problem.key.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", problem.key)
            };
        }
        self
    }
}

impl From<ConfigProblem> for ConfigError {
    fn from(problem: ConfigProblem) -> ConfigError {
        ConfigError {
            problems: vec![problem],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while a whole configuration is checked, so all are reported at once.
#[derive(Debug, Default)]
pub struct Problems {
    problems: Vec<ConfigProblem>,
}

impl Problems {
    pub fn new() -> Problems {
        Problems::default()
    }

    pub fn push(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.problems.push(ConfigProblem::new(key, message));
    }

    pub fn add(&mut self, problem: ConfigProblem) {
        self.problems.push(problem);
    }

    /// Keeps every problem of `error`.
    pub fn extend(&mut self, error: ConfigError) {
        self.problems.extend(error.problems);
    }

    /// The value of `result`, or `None` with its problems kept.
    pub fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.extend(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// `value` when nothing was found wrong, else every problem found.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }

    /// [`Self::finish`] for a value built from parts, `None` when a part could not be read
    /// (a part is left out only with the problem that left it out).
    pub fn complete<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match (self.finish(())?, value) {
            ((), Some(value)) => Ok(value),
            ((), None) => Err(ConfigError::new("", "incomplete configuration")),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (u64, u64) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line as u64, column as u64)
}

/// The key path of the narrowest key or value whose span holds the start of `span`, e.g.
/// `mqtt.servers[1].url`; empty when none does (a syntax error before any key).
fn key_at(text: &str, span: Range<usize>) -> String {
    let (root, _) = toml::de::DeTable::parse_recoverable(text);
    let mut best: Option<(usize, String)> = None;
    let mut path = String::new();
    visit_table(root.get_ref(), span.start, &mut path, &mut best);
    best.map(|(_, path)| path).unwrap_or_default()
}

/// Every key and value is visited: a table's own span covers only its header, so its
/// entries may lie outside it.
fn visit_table(
    table: &toml::de::DeTable<'_>,
    at: usize,
    path: &mut String,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table {
        let before = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        consider(key.span(), at, path, best);
        visit_value(value, at, path, best);
        path.truncate(before);
    }
}

fn visit_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    at: usize,
    path: &mut String,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), at, path, best);
    match value.get_ref() {
        toml::de::DeValue::Table(table) => visit_table(table, at, path, best),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let before = path.len();
                path.push_str(&format!("[{i}]"));
                visit_value(item, at, path, best);
                path.truncate(before);
            }
        }
        _ => {}
    }
}

/// Keeps `path` when `span` holds `at` and is narrower than the best so far (or as
/// narrow and deeper).
fn consider(span: Range<usize>, at: usize, path: &str, best: &mut Option<(usize, String)>) {
    if !(span.start <= at && at < span.end.max(span.start + 1)) {
        return;
    }
    let width = span.end - span.start;
    let better = match best {
        Some((w, p)) => width < *w || (width == *w && path.len() > p.len()),
        None => true,
    };
    if better {
        *best = Some((width, path.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_shows_file_position_key_and_message() {
        let p = ConfigProblem::new("mqtt.servers[1].url", "has no scheme");
        assert_eq!(p.to_string(), "mqtt.servers[1].url: has no scheme");
        let p = p.in_file("edge.toml");
        assert_eq!(
            p.to_string(),
            "edge.toml: mqtt.servers[1].url: has no scheme"
        );
        let p = p.at(12, 7);
        assert_eq!(
            p.to_string(),
            "edge.toml:12:7: mqtt.servers[1].url: has no scheme"
        );
        let whole = ConfigProblem::new("", "cannot read: denied").in_file("a.toml");
        assert_eq!(whole.to_string(), "a.toml: cannot read: denied");
    }

    #[test]
    fn every_problem_is_kept_and_shown_one_per_line() {
        let mut problems = Problems::new();
        problems.push("a.b", "first");
        problems.add(
            ConfigProblem::new("type", "second")
                .in_file("t.csv")
                .at(4, 6),
        );
        problems.extend(ConfigError::new("c[0]", "third").join(ConfigError::new("c[1]", "more")));
        assert_eq!(problems.check(Ok::<_, ConfigError>(5)), Some(5));
        assert_eq!(
            problems.check::<()>(Err(ConfigError::new("d", "fourth"))),
            None
        );
        let e = problems.finish(()).unwrap_err().in_file("x.toml");
        assert_eq!(e.keys(), ["a.b", "type", "c[0]", "c[1]", "d"]);
        assert_eq!(
            e.to_string(),
            "x.toml: a.b: first\nt.csv:4:6: type: second\nx.toml: c[0]: third\nx.toml: c[1]: more\nx.toml: d: fourth"
        );
        assert_eq!(Problems::new().finish(7).unwrap(), 7);
    }

    #[test]
    fn a_value_missing_a_part_is_never_complete() {
        let mut problems = Problems::new();
        let part: Option<u8> = problems.check(Err(ConfigError::new("history", "missing")));
        let e = problems.complete(part).unwrap_err();
        assert_eq!(e.keys(), ["history"]);
        assert_eq!(Problems::new().complete(Some(3)).unwrap(), 3);
        assert!(Problems::new().complete(None::<u8>).is_err());
    }

    #[test]
    fn keys_go_under_a_section() {
        let mut problems = Problems::new();
        problems.push("batch_size", "must be above 0");
        problems.push("", "missing");
        let e = problems.finish(()).unwrap_err().under("store");
        assert_eq!(e.keys(), ["store.batch_size", "store"]);
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let error = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = ConfigError::unreadable(Path::new("/etc/none.toml"), &error);
        assert!(
            e.to_string().starts_with("/etc/none.toml: cannot read: "),
            "{e}"
        );
        assert_eq!(e.keys(), [""]);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        mqtt: Mqtt,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Mqtt {
        keep_alive_s: Option<u64>,
        #[serde(default)]
        servers: Vec<Server>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        url: String,
    }

    fn toml_error(text: &str) -> ConfigError {
        let e = toml::from_str::<Doc>(text).unwrap_err();
        ConfigError::from_toml(&e, text).in_file("n.toml")
    }

    #[test]
    fn a_toml_type_error_keeps_line_column_and_key_path() {
        let text = "[mqtt]\nkeep_alive_s = 30\n\n[[mqtt.servers]]\nurl = \"mqtt://a\"\n\n[[mqtt.servers]]\nurl = 5\n";
        let e = toml_error(text);
        assert_eq!(e.keys(), ["mqtt.servers[1].url"]);
        assert_eq!(
            e.problems()[0].position,
            Some(Position { line: 8, column: 7 })
        );
        assert!(
            e.to_string()
                .starts_with("n.toml:8:7: mqtt.servers[1].url: invalid type: integer `5`"),
            "{e}"
        );
    }

    #[test]
    fn a_toml_unknown_key_is_named_by_its_path() {
        let text = "[mqtt]\nkeep_alive_s = \"x\"\n";
        assert_eq!(toml_error(text).keys(), ["mqtt.keep_alive_s"]);
        let text = "[mqtt]\nkeepalive = 3\n";
        let e = toml_error(text);
        assert_eq!(e.keys(), ["mqtt.keepalive"]);
        assert!(
            e.to_string()
                .starts_with("n.toml:2:1: mqtt.keepalive: unknown field `keepalive`"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_toml_key_is_named_by_its_table() {
        let e = toml_error("[mqtt]\n\n[[mqtt.servers]]\n");
        assert_eq!(e.keys(), ["mqtt.servers[0]"]);
        assert!(e.to_string().contains("missing field `url`"), "{e}");
    }

    #[test]
    fn a_toml_syntax_error_keeps_line_and_column() {
        let text = "[mqtt]\nkeep_alive_s = = 3\n";
        let e = toml_error(text);
        let p = &e.problems()[0];
        assert_eq!(p.position.map(|p| p.line), Some(2));
        assert!(e.to_string().starts_with("n.toml:2:"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_and_column("ab\nüx", 5), (2, 2));
        assert_eq!(line_and_column("", 0), (1, 1));
    }
}
