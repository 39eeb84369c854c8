//! The one log setup of every binary, on stderr, filtered by `RUST_LOG` (default `info`),
//! in one of three formats, chosen by `LOG_FORMAT` if set, else by the configuration's
//! `[log] format` if given, else from the environment:
//!
//! - `json`: one JSON object per line (`timestamp`, `level`, `target`, `fields` with
//!   `message`, and the spans);
//! - `journald`, the default under journald (`JOURNAL_STREAM` names our stderr, as systemd
//!   sets it for a service): no timestamp of our own, each line prefixed with its syslog
//!   priority as `<N>` (sd-daemon(3)), no ANSI colours;
//! - `human`, the default otherwise: the human-readable format, coloured on a terminal.
//!
//! Every format keeps one event on one physical line: control characters a client put in
//! a message or field (`\n`, `\r`, ...) are escaped on the way out, so no input can forge
//! a log line. Call sites still log client strings with `?value` (or [`Escaped`]) so they
//! show quoted.

use std::fmt;
use std::io::{self, Write};

use serde::Deserialize;
use tracing::{Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// `[log]`: how the service writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json`, `journald` or `human`; absent: journald under systemd, human otherwise.
    pub format: Option<Format>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Timestamped, human-readable lines.
    Human,
    /// `<N>`-prefixed lines without timestamps, for journald.
    Journald,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The format `LOG_FORMAT` (`json`, `journald`, `human`) names; without it, the
    /// `configured` one; without that, journald when `journal_stream` (stderr is connected
    /// to the journal), human otherwise. A value not understood is returned as the error,
    /// beside the default.
    pub fn choose(
        log_format: Option<&str>,
        configured: Option<Format>,
        journal_stream: bool,
    ) -> (Format, Option<String>) {
        let default = match configured {
            Some(format) => format,
            None if journal_stream => Format::Journald,
            None => Format::Human,
        };
        match log_format.map(str::trim) {
            None | Some("") => (default, None),
            Some(v) if v.eq_ignore_ascii_case("json") => (Format::Json, None),
            Some(v) if v.eq_ignore_ascii_case("journald") => (Format::Journald, None),
            Some(v) if v.eq_ignore_ascii_case("human") => (Format::Human, None),
            Some(v) => (default, Some(v.to_owned())),
        }
    }
}

/// Installs the subscriber; a second call (tests) leaves the first one in place.
pub fn init() {
    init_with(LogConfig::default());
}

/// As [`init`], with the configuration's `[log]` table.
pub fn init_with(config: LogConfig) {
    use tracing_subscriber::util::SubscriberInitExt;

    let log_format = std::env::var("LOG_FORMAT").ok();
    let (format, unknown) =
        Format::choose(log_format.as_deref(), config.format, stderr_is_journal());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = format == Format::Human && io::IsTerminal::is_terminal(&io::stderr());
    if subscriber(format, filter, io::stderr, ansi)
        .try_init()
        .is_ok()
        && let Some(value) = unknown
    {
        tracing::warn!(value = ?value, "LOG_FORMAT not understood (json, journald or human); using the default");
    }
}

/// The subscriber for `format`, writing through `writer`; `ansi` colours the human format.
pub fn subscriber<W>(
    format: Format,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLine(writer));
    match format {
        Format::Human => Box::new(builder.with_ansi(ansi).finish()),
        Format::Journald => Box::new(
            builder
                .with_ansi(false)
                .event_format(Journald(format::format().without_time().with_level(false)))
                .finish(),
        ),
        Format::Json => Box::new(builder.with_ansi(false).json().finish()),
    }
}

/// Whether `JOURNAL_STREAM` names our stderr (device and inode, as systemd.exec(5) says
/// to check), so a child that merely inherited the variable does not write `<N>` lines.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority journald reads from a `<N>` prefix (sd-daemon(3)).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// An event format that writes the `<N>` priority, then the inner format.
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Wraps a writer so each event stays on one physical line: the formatter hands over one
/// whole event per write, and every control character in it but the final newline (and
/// tab, and the escape of ANSI colours) is written escaped.
struct OneLine<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for OneLine<W> {
    type Writer = OneLineWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        OneLineWriter(self.0.make_writer_for(meta))
    }
}

struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        // Control bytes are never part of a multi-byte UTF-8 sequence: bytewise is safe.
        let mut out = Vec::with_capacity(buf.len());
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' | 0x1b => out.push(b),
                0..=0x1f | 0x7f => {
                    let _ = write!(out, "\\x{b:02x}");
                }
                _ => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A client-supplied value in a log field (`%Escaped(&node)`): its `Display` text shown
/// quoted with control characters escaped, as `?value` shows a `&str`.
#[derive(Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.to_string())
    }
}

impl<T: fmt::Display> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const FORGED: &str = "a\nforged line";

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// The lines `format` writes for one event at each level, a forged message, a forged
    /// field, and an event in a span holding a forged field: eight events.
    fn lines(format: Format) -> Vec<String> {
        let capture = Capture::default();
        let subscriber = subscriber(format, EnvFilter::new("trace"), capture.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(code = 1, "an error");
            tracing::warn!("a warning");
            tracing::info!("some info");
            tracing::debug!("a detail");
            tracing::trace!("a trace");
            tracing::info!("{FORGED}");
            tracing::info!(topic = %FORGED, "field");
            let span = tracing::info_span!("client", id = %FORGED);
            span.in_scope(|| tracing::warn!(carriage = %"x\r\ny", "in span"));
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn assert_one_line_per_event(lines: &[String]) {
        assert_eq!(lines.len(), 8, "{lines:#?}");
        assert!(
            lines.iter().all(|l| !l.starts_with("forged line")),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains('\r')), "{lines:#?}");
        assert!(lines[5].contains("forged line"), "{lines:#?}");
        assert!(lines[6].contains("forged line"), "{lines:#?}");
        assert!(lines[7].contains("forged line"), "{lines:#?}");
    }

    #[test]
    fn journald_lines_carry_the_priority_and_no_timestamp() {
        let lines = lines(Format::Journald);
        assert_one_line_per_event(&lines);
        let prefixes: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
        assert_eq!(
            prefixes,
            ["<3>", "<4>", "<6>", "<7>", "<7>", "<6>", "<6>", "<4>"]
        );
        assert!(lines[0].ends_with("an error code=1"), "{}", lines[0]);
        // No timestamp: right after the prefix comes the target.
        assert!(
            lines
                .iter()
                .all(|l| l[3..].starts_with("infra::logging::tests:")
                    || l[3..].starts_with("client{")),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:#?}");
        assert_eq!(
            lines[5], "<6>infra::logging::tests: a\\nforged line",
            "the message is escaped"
        );
    }

    #[test]
    fn human_lines_are_timestamped_and_escaped() {
        let lines = lines(Format::Human);
        assert_one_line_per_event(&lines);
        // An RFC 3339 timestamp opens every line: `2026-...T...Z`.
        assert!(
            lines
                .iter()
                .all(|l| l.as_bytes()[4] == b'-' && l[..30].contains('T')),
            "{lines:#?}"
        );
        assert!(lines[0].contains("ERROR") && lines[0].contains("an error code=1"));
        assert!(lines[6].contains(r"topic=a\nforged line"), "{}", lines[6]);
    }

    #[test]
    fn json_lines_are_objects_with_timestamp_level_target_and_fields() {
        let lines = lines(Format::Json);
        assert_one_line_per_event(&lines);
        let events: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let levels: Vec<&str> = events
            .iter()
            .map(|e| e["level"].as_str().unwrap())
            .collect();
        assert_eq!(
            levels,
            [
                "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "INFO", "INFO", "WARN"
            ]
        );
        for event in &events {
            assert!(event["timestamp"].is_string(), "{event}");
            assert_eq!(event["target"], "infra::logging::tests");
        }
        assert_eq!(events[0]["fields"]["message"], "an error");
        assert_eq!(events[0]["fields"]["code"], 1);
        assert_eq!(events[5]["fields"]["message"], FORGED);
        assert_eq!(events[6]["fields"]["topic"], FORGED);
        assert_eq!(events[7]["span"]["id"], FORGED);
        assert_eq!(events[7]["fields"]["carriage"], "x\r\ny");
    }

    #[test]
    fn the_format_comes_from_log_format_then_the_configuration_then_journal_stream() {
        assert_eq!(Format::choose(None, None, false), (Format::Human, None));
        assert_eq!(Format::choose(None, None, true), (Format::Journald, None));
        assert_eq!(
            Format::choose(Some(""), None, true),
            (Format::Journald, None)
        );
        assert_eq!(
            Format::choose(Some("JSON"), None, true),
            (Format::Json, None)
        );
        assert_eq!(
            Format::choose(Some("journald"), None, false),
            (Format::Journald, None)
        );
        assert_eq!(
            Format::choose(Some("human"), None, true),
            (Format::Human, None)
        );
        assert_eq!(
            Format::choose(Some("xml"), None, false),
            (Format::Human, Some("xml".to_owned()))
        );
        let json = Some(Format::Json);
        assert_eq!(Format::choose(None, json, true), (Format::Json, None));
        assert_eq!(Format::choose(None, json, false), (Format::Json, None));
        assert_eq!(
            Format::choose(Some("human"), json, true),
            (Format::Human, None)
        );
        assert_eq!(
            Format::choose(Some("xml"), json, false),
            (Format::Json, Some("xml".to_owned()))
        );
    }

    #[test]
    fn the_log_table_names_a_format() {
        let config: LogConfig = toml::from_str("format = \"json\"").unwrap();
        assert_eq!(config.format, Some(Format::Json));
        assert!(toml::from_str::<LogConfig>("format = \"xml\"").is_err());
        assert!(toml::from_str::<LogConfig>("colour = true").is_err());
    }

    #[test]
    fn escaped_quotes_and_escapes_control_characters() {
        assert_eq!(Escaped(FORGED).to_string(), r#""a\nforged line""#);
        assert_eq!(format!("{:?}", Escaped("x\ry")), r#""x\ry""#);
        assert_eq!(
            Escaped(format_args!("{}/{}", "g\n", 1)).to_string(),
            r#""g\n/1""#
        );
    }

    #[test]
    fn a_partial_write_is_escaped_without_its_own_newline() {
        let mut out = OneLineWriter(Vec::new());
        out.write_all(b"a\x07b\nc\n").unwrap();
        out.write_all(b"no end\r").unwrap();
        assert_eq!(out.0, b"a\\x07b\\nc\nno end\\r");
    }
}
