//! Every event and action is logged through `tracing`: each call site names its
//! fields (`kind` says what the record is about: session, pair, event, command,
//! operator, notify, run, ...), and the subscriber installed here writes them to
//! stderr, one line per record: a readable line by default, or JSON lines for
//! machines (`--log-format json`). A session's records are in its `session` span, so
//! each line names the session. When stderr is a terminal, lines print above the
//! progress bars.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Now as RFC 3339 UTC with milliseconds (the journal's and the status' clock).
pub fn timestamp() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// The span a session's records are in: its name is on every line.
pub fn session_span(session: &str) -> tracing::Span {
    tracing::info_span!("session", session)
}

/// Installs the process's subscriber (once; later calls change nothing).
pub fn init(format: LogFormat, level: tracing::Level, bars: Option<indicatif::MultiProgress>) {
    let _ = tracing::subscriber::set_global_default(subscriber(format, level, bars));
}

/// Records at `level` and above, on stderr; through `bars`' terminal when there are bars.
pub fn subscriber(
    format: LogFormat,
    level: tracing::Level,
    bars: Option<indicatif::MultiProgress>,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_writer(Stderr { bars, journal })
        .with_ansi(false)
        .with_max_level(level);
    match format {
        LogFormat::Human => Box::new(builder.with_target(false).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Where the records go: stderr, or above the progress bars.
struct Stderr {
    bars: Option<indicatif::MultiProgress>,
    /// stderr is the systemd journal's stream: each line starts with its syslog
    /// priority (`<4>`), which journald keeps as the record's priority and strips, so
    /// `journalctl -p warning` shows the warnings.
    journal: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            bars: self.bars.clone(),
            text: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        let mut line = self.make_writer();
        if self.journal {
            line.text
                .extend_from_slice(priority(*meta.level()).as_bytes());
        }
        line
    }
}

/// The syslog priority prefix of a record at `level` (sd-daemon(3)).
fn priority(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "<3>",
        tracing::Level::WARN => "<4>",
        tracing::Level::INFO => "<6>",
        _ => "<7>",
    }
}

/// Whether stderr is the stream systemd named in `JOURNAL_STREAM` (`DEVICE:INODE`): a
/// child's stderr redirected elsewhere keeps the variable but not the stream.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(stderr.dev()) && ino.parse() == Ok(stderr.ino())
}

/// One record, written out whole when the formatter is done with it (so lines from
/// several threads never interleave, and the bars redraw below it once).
struct Line {
    bars: Option<indicatif::MultiProgress>,
    text: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(String::from_utf8_lossy(&self.text).trim_end_matches('\n'));
            }
            None => {
                let _ = std::io::stderr().lock().write_all(&self.text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn journal_stream_is_recognised_by_stderr_s_identity_only() {
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self/fd/2").expect("stderr");
        let ours = format!("{}:{}", me.dev(), me.ino());
        assert!(super::stderr_is_journal(Some(&ours)));
        assert!(!super::stderr_is_journal(Some(&format!(
            "{}:{}",
            me.dev(),
            me.ino() + 1
        ))));
        assert!(!super::stderr_is_journal(Some("garbage")));
        assert!(!super::stderr_is_journal(None));
        assert_eq!(super::priority(tracing::Level::WARN), "<4>");
        assert_eq!(super::priority(tracing::Level::ERROR), "<3>");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = super::timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
