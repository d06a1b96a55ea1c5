//! Every event and action is logged: a readable line by default, or JSON lines for
//! machines (`--log-format json`). Written to stderr, one line per record.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug)]
pub struct Log {
    pub format: LogFormat,
    pub session: String,
}

/// Now as RFC 3339 UTC with milliseconds (civil date from days: H. Hinnant's algorithm).
pub fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
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
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
