//! Segment definition files: a short header of `-- key: value` comment lines, then SQL.
//!
//! ```sql
//! -- name: reactivation
//! -- description: At least two orders, none in the last 90 days.
//! -- schedule: rate(1 day)
//! -- payload: order_count, last_order_at
//! SELECT profile_id, ... FROM orders ...
//! ```
//!
//! The header keys are documented in `docs/segments.md`.

use chrono::{DateTime, Duration, Utc};

/// A parsed segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDefinition {
    pub file: String,
    pub name: String,
    pub description: String,
    /// How often the segment is due (`rate(1 day)` when not stated).
    pub schedule: Schedule,
    /// Result columns that are part of a membership besides `profile_id`.
    pub key: Vec<String>,
    /// Result columns passed to activation with each member.
    pub payload: Vec<String>,
    /// `-- attribute: col`: the member's value of `col` is a profile attribute passed with
    /// every activation request of the run (the `preferred-channel` segment gives
    /// `preferred_channel`, which campaigns use to pick a channel).
    pub attribute: Option<String>,
    pub sql: String,
}

/// A segment's refresh period, from `rate(N minute(s)|hour(s)|day(s))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { every: Duration::days(1) }
    }
}

/// A `-- schedule:` value that is not a usable rate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {text:?} must be rate(N minutes|hours|days), e.g. rate(1 day)")]
    Malformed { text: String },
    #[error("schedule {text:?} is shorter than 5 minutes")]
    TooShort { text: String },
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let bad = || ScheduleError::Malformed { text: text.to_string() };
        let inner = text.trim().strip_prefix("rate(").and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
        let (n, unit) = inner.trim().split_once(' ').ok_or_else(bad)?;
        let n: i64 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let every = match unit.trim() {
            "minute" | "minutes" => Duration::try_minutes(n),
            "hour" | "hours" => Duration::try_hours(n),
            "day" | "days" => Duration::try_days(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        if every < Duration::minutes(5) {
            return Err(ScheduleError::TooShort { text: text.to_string() });
        }
        Ok(Schedule { every })
    }

    /// Whether a run at `run_at` is due after the last committed run at `last` (a run
    /// fired up to a minute early still counts, so an hourly trigger serves `rate(1 hour)`).
    pub fn is_due(&self, last: Option<DateTime<Utc>>, run_at: DateTime<Utc>) -> bool {
        match last {
            None => true,
            Some(last) => run_at - last >= self.every - Duration::minutes(1),
        }
    }
}

/// A segment file that cannot be deployed, naming the file and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct DefinitionError {
    pub file: String,
    pub problem: String,
}

/// One `-- key: value` header line of a SQL definition file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its line number (1-based), for errors about its value.
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// A SQL definition file (a segment of `segments/`, a measure of `measures/`) split into its
/// name, its other header lines and its query: the one parser of both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlFile {
    pub name: String,
    /// The header lines other than `name`, in file order.
    pub headers: Vec<Header>,
    /// The query, without a trailing `;`.
    pub sql: String,
}

/// A header line is `-- key: value` where `key` is one lowercase word; other comment lines
/// (capitalised, or several words before a colon) are documentation.
fn header_key(comment: &str) -> Option<(&str, &str)> {
    let (key, value) = comment.trim_start().split_once(':')?;
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some((key, value.trim()))
}

impl SqlFile {
    /// Splits `text` (of `file`, a `what` such as "segment" or "measure") into header and
    /// query. Refused, naming the file: a header key not in `keys` (so a misspelt `-- nme:`
    /// does not silently drop the name; `keys` lists `name` too), no `-- name:`, a name
    /// that is not lowercase letters, digits, '-' or '_', a file not named `<name>.sql`, no
    /// query after the header.
    pub fn parse(file: &str, text: &str, what: &str, keys: &[&str]) -> Result<SqlFile, DefinitionError> {
        let err = |problem: String| DefinitionError { file: file.to_string(), problem };
        let (mut name, mut headers, mut sql_lines) = (None, Vec::new(), Vec::new());
        let mut in_header = true;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if in_header {
                if let Some(comment) = trimmed.strip_prefix("--") {
                    if let Some((key, value)) = header_key(comment) {
                        if !keys.contains(&key) {
                            return Err(err(format!("line {}: unknown header key {key:?} (expected {})", i + 1, keys.join(", "))));
                        }
                        if key == "name" {
                            name = Some(value.to_string());
                        } else {
                            headers.push(Header { line: i + 1, key: key.to_string(), value: value.to_string() });
                        }
                    }
                    continue;
                }
                if trimmed.is_empty() {
                    continue;
                }
                in_header = false;
            }
            sql_lines.push(line);
        }
        let name = name.ok_or_else(|| err("missing `-- name:` header".into()))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(err(format!("{what} name {name:?} must be lowercase letters, digits, '-' or '_'")));
        }
        let expected = format!("{name}.sql");
        if file.rsplit('/').next() != Some(expected.as_str()) {
            return Err(err(format!("{what} {name:?} must live in a file named {expected}")));
        }
        let sql = sql_lines.join("\n").trim().trim_end_matches(';').trim().to_string();
        if sql.is_empty() {
            return Err(err("no SQL after the header".into()));
        }
        Ok(SqlFile { name, headers, sql })
    }
}

impl SegmentDefinition {
    pub fn parse(file: &str, text: &str) -> Result<Self, DefinitionError> {
        let err = |problem: String| DefinitionError { file: file.to_string(), problem };
        let parsed = SqlFile::parse(file, text, "segment", &["name", "description", "schedule", "key", "payload", "attribute"])?;
        let (mut description, mut schedule, mut key, mut payload, mut attribute) =
            (String::new(), Schedule::default(), Vec::new(), Vec::new(), None);
        let columns = |value: &str| -> Vec<String> { value.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect() };
        for h in &parsed.headers {
            let value = h.value.clone();
            match h.key.as_str() {
                "description" => description = value,
                "schedule" => schedule = Schedule::parse(&value).map_err(|p| err(format!("line {}: {p}", h.line)))?,
                "key" => key = columns(&value),
                "payload" => payload = columns(&value),
                _ => attribute = Some(value).filter(|v| !v.is_empty()),
            }
        }
        let SqlFile { name, sql, .. } = parsed;
        if let Some(k) = key.iter().find(|k| *k == "profile_id") {
            return Err(err(format!("key column {k:?} is implied; list only the extra key columns")));
        }
        if let Some(a) = &attribute {
            if !key.contains(a) && !payload.contains(a) {
                return Err(err(format!("attribute column {a:?} must be a key or payload column")));
            }
        }
        Ok(SegmentDefinition { file: file.to_string(), name, description, schedule, key, payload, attribute, sql })
    }

    /// The built-in library embedded at build time.
    pub fn library() -> Result<Vec<SegmentDefinition>, DefinitionError> {
        crate::SEGMENT_FILES.iter().map(|(file, text)| Self::parse(file, text)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_sql() {
        let d = SegmentDefinition::parse(
            "segments/vip.sql",
            "-- name: vip\n-- description: Best customers\n-- payload: total, orders\n\nSELECT profile_id FROM orders;\n",
        )
        .unwrap();
        assert_eq!(d.name, "vip");
        assert_eq!(d.payload, vec!["total", "orders"]);
        assert_eq!(d.sql, "SELECT profile_id FROM orders");
    }

    #[test]
    fn problems_name_the_file() {
        let e = SegmentDefinition::parse("segments/x.sql", "SELECT 1").unwrap_err();
        assert_eq!(e.file, "segments/x.sql");
        assert!(e.to_string().contains("name"), "{e}");
        let e = SegmentDefinition::parse("segments/x.sql", "-- name: y\nSELECT 1").unwrap_err();
        assert!(e.problem.contains("y.sql"), "{e}");
        let e = SegmentDefinition::parse("x.sql", "-- name: x\n-- colour: blue\nSELECT 1").unwrap_err();
        assert!(e.problem.contains("colour"), "{e}");
    }

    #[test]
    fn schedules_and_keys() {
        let d = SegmentDefinition::parse("rfm.sql", "-- name: rfm\n-- schedule: rate(2 hours)\n-- key: tier\nSELECT 1").unwrap();
        assert_eq!(d.schedule.every, Duration::hours(2));
        assert_eq!(d.key, vec!["tier"]);
        let e = SegmentDefinition::parse("x.sql", "-- name: x\n-- schedule: every day\nSELECT 1").unwrap_err();
        assert!(e.problem.contains("line 2") && e.problem.contains("rate("), "{e}");
        let e = SegmentDefinition::parse("x.sql", "-- name: x\n-- schedule: rate(1 minute)\nSELECT 1").unwrap_err();
        assert!(e.problem.contains("shorter than 5 minutes"), "{e}");
        assert_eq!(Schedule::parse("rate(2 weeks)"), Err(ScheduleError::Malformed { text: "rate(2 weeks)".into() }));
        assert!(Schedule::parse("rate(99999999999999 days)").is_err(), "an overflowing rate is refused, not a panic");
        let at = |h: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap();
        let daily = Schedule::default();
        assert!(daily.is_due(None, at(0)));
        assert!(!daily.is_due(Some(at(0)), at(23)));
        assert!(daily.is_due(Some(at(0)), at(24)));
        assert!(daily.is_due(Some(at(0)), at(24) - Duration::seconds(30)));
    }

    #[test]
    fn the_library_parses() {
        let lib = SegmentDefinition::library().unwrap();
        assert!(lib.iter().any(|d| d.name == "reactivation"));
    }
}
