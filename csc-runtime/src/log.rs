//! Every event and action is logged: a readable line by default, or JSON lines for
//! machines (`--log-format json`). Written to stderr, one line per record; above the
//! progress bars when stderr is a terminal.

use serde_json::{json, Map, Value};
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug)]
pub struct Log {
    pub format: LogFormat,
    pub session: String,
    /// Progress bars of long copies (a terminal only): records print above them.
    pub bars: Option<indicatif::MultiProgress>,
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn timestamp() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

impl Log {
    /// One record: `kind` names it, `fields` carry its data, `text` says it for people.
    pub fn record(&self, kind: &str, fields: Value, text: &str) {
        let time = timestamp();
        let line = match self.format {
            LogFormat::Human => format!("{time} {} {text}\n", self.session),
            LogFormat::Json => {
                let mut map = Map::new();
                map.insert("time".into(), json!(time));
                map.insert("session".into(), json!(self.session));
                map.insert("kind".into(), json!(kind));
                if let Value::Object(extra) = fields {
                    map.extend(extra);
                }
                map.insert("message".into(), json!(text));
                format!("{}\n", Value::Object(map))
            }
        };
        match &self.bars {
            // Above the bars, through their terminal.
            Some(bars) => {
                let _ = bars.println(line.trim_end_matches('\n'));
            }
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
