//! Parsers of the small value languages inside elements: sequence numbers, KEEP
//! counts, durations, schedules (addresses are the runtime's, `csc_runtime::address`).
//! Each error says what is valid (the checker's help).

use crate::ir::Schedule;

const DURATION: &str = "write a number and a unit (d, h, m, s), e.g. 30s, 5m, 3h or 1h30m";
const SCHEDULE: &str = "write `every DURATION` (e.g. every 3h) or `daily HH:MM` (e.g. daily 00:00)";

/// Why a value is not one of its small language's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("sequence numbers start at 1")]
    SequenceZero,
    #[error("{0} is too large; sequence numbers are at most {max}", max = u32::MAX)]
    SequenceTooLarge(u64),
    #[error("`{0}` is not a whole number; write a number such as 1")]
    NotSequence(String),
    #[error("KEEP counts the copies kept: from 1 to 10000")]
    KeepOutOfRange,
    #[error("`{0}` is not a whole number; write how many copies to keep, such as 24")]
    NotKeep(String),
    #[error("`{0}`: a unit needs a number before it; {DURATION}")]
    UnitWithoutNumber(String),
    #[error("`{0}` is too long")]
    DurationOverflow(String),
    #[error("`{0}` is not a duration; {DURATION}")]
    NotDuration(String),
    #[error("`{0}` has a number without a unit; {DURATION}")]
    NumberWithoutUnit(String),
    #[error("`{0}` is zero; {DURATION}")]
    ZeroDuration(String),
    #[error("`{0}` is longer than a year")]
    LongerThanAYear(String),
    #[error("`{0}` is not HH:MM; {SCHEDULE}")]
    NotHhMm(String),
    #[error("`{0}` is not a time of day from 00:00 to 23:59; {SCHEDULE}")]
    NotTimeOfDay(String),
    #[error("`{0}` is not a schedule; {SCHEDULE}")]
    NotSchedule(String),
}

const UNITS: &[(char, u64)] = &[('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// `SEQ_NUM`, `TO_SEQ`: a whole number from 1 to 2^32-1.
pub fn seq_number(text: &str) -> Result<u32, ValueError> {
    match text.parse::<u64>() {
        Ok(0) => Err(ValueError::SequenceZero),
        Ok(n) => u32::try_from(n).map_err(|_| ValueError::SequenceTooLarge(n)),
        Err(_) => Err(ValueError::NotSequence(text.to_string())),
    }
}

/// KEEP: how many copies a point-in-time sequence keeps, 1 to 10,000.
pub fn keep(text: &str) -> Result<u32, ValueError> {
    match text.parse::<u32>() {
        Ok(n @ 1..=10_000) => Ok(n),
        Ok(_) => Err(ValueError::KeepOutOfRange),
        Err(_) => Err(ValueError::NotKeep(text.to_string())),
    }
}

/// `90s`, `5m`, `3h`, `1h30m`, `2d`: at least one second, at most a year.
pub fn duration(text: &str) -> Result<u64, ValueError> {
    let text_of = || text.to_string();
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if let Some(&(_, secs)) = UNITS.iter().find(|(u, _)| *u == c.to_ascii_lowercase()) {
            let n: u64 = digits
                .parse()
                .map_err(|_| ValueError::UnitWithoutNumber(text_of()))?;
            total = n
                .checked_mul(secs)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| ValueError::DurationOverflow(text_of()))?;
            digits.clear();
        } else {
            return Err(ValueError::NotDuration(text_of()));
        }
    }
    if !digits.is_empty() {
        return Err(ValueError::NumberWithoutUnit(text_of()));
    }
    match total {
        0 => Err(ValueError::ZeroDuration(text_of())),
        t if t > 366 * 86_400 => Err(ValueError::LongerThanAYear(text_of())),
        t => Ok(t),
    }
}

/// Prints seconds in the largest exact units: 5400 -> `1h30m`.
pub fn format_duration(mut secs: u64) -> String {
    let mut out = String::new();
    for &(unit, size) in UNITS {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// `every DURATION` or `daily HH:MM`.
pub fn schedule(text: &str) -> Result<Schedule, ValueError> {
    let mut words = text.split_whitespace();
    match (
        words.next().map(str::to_ascii_lowercase).as_deref(),
        words.next(),
        words.next(),
    ) {
        (Some("every"), Some(d), None) => duration(d).map(|seconds| Schedule::Every { seconds }),
        (Some("daily"), Some(t), None) => {
            let (h, m) = t
                .split_once(':')
                .ok_or_else(|| ValueError::NotHhMm(t.to_string()))?;
            match (h.parse::<u8>(), m.parse::<u8>()) {
                (Ok(hour), Ok(minute)) if hour < 24 && minute < 60 && m.len() == 2 => {
                    Ok(Schedule::Daily { hour, minute })
                }
                _ => Err(ValueError::NotTimeOfDay(t.to_string())),
            }
        }
        _ => Err(ValueError::NotSchedule(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        assert_eq!(duration("90s"), Ok(90));
        assert_eq!(duration("1h30m"), Ok(5400));
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(86_400 + 1), "1d1s");
        assert!(duration("0s").is_err());
        assert!(duration("5").is_err());
        assert!(duration("h").is_err());
        assert!(duration("99999999999999999999d").is_err());
        assert!(duration("400d").is_err());
    }

    #[test]
    fn schedules() {
        assert_eq!(
            schedule("every 3h"),
            Ok(Schedule::Every { seconds: 10_800 })
        );
        assert_eq!(
            schedule("DAILY 00:05"),
            Ok(Schedule::Daily { hour: 0, minute: 5 })
        );
        assert!(schedule("daily 24:00").is_err());
        assert!(schedule("daily 1:5").is_err());
        assert!(schedule("hourly").is_err());
    }

    #[test]
    fn sequence_numbers() {
        assert_eq!(seq_number("7"), Ok(7));
        assert!(seq_number("0").is_err());
        assert!(seq_number("99999999999999999999999").is_err());
        assert!(seq_number("4294967296").is_err());
        assert!(seq_number("-1").is_err());
    }
}
