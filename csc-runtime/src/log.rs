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
    let builder = tracing_subscriber::fmt()
        .with_writer(Stderr { bars })
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
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            bars: self.bars.clone(),
            text: Vec::new(),
        }
    }
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
    fn timestamps_are_rfc3339_utc() {
        let t = super::timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
