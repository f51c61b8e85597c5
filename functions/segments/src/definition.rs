//! Segment definition files: a short header of `-- key: value` comment lines, then SQL.
//!
//! ```sql
//! -- name: reactivation
//! -- description: At least two orders, none in the last 90 days.
//! -- schedule: rate(1 day)
//! -- payload: order_count, last_order_at
//! SELECT profile_id, ... FROM orders ...
//! ```

/// A parsed segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDefinition {
    pub file: String,
    pub name: String,
    pub description: String,
    pub schedule: Option<String>,
    /// Result columns passed to activation with each member.
    pub payload: Vec<String>,
    pub sql: String,
}

/// A segment file that cannot be deployed, naming the file and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct DefinitionError {
    pub file: String,
    pub problem: String,
}

impl SegmentDefinition {
    pub fn parse(file: &str, text: &str) -> Result<Self, DefinitionError> {
        let err = |problem: String| DefinitionError { file: file.to_string(), problem };
        let (mut name, mut description, mut schedule, mut payload) = (None, String::new(), None, Vec::new());
        let mut sql_lines = Vec::new();
        let mut in_header = true;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if in_header {
                if let Some(comment) = trimmed.strip_prefix("--") {
                    if let Some((key, value)) = comment.split_once(':') {
                        let value = value.trim().to_string();
                        match key.trim() {
                            "name" => name = Some(value),
                            "description" => description = value,
                            "schedule" => schedule = Some(value),
                            "payload" => {
                                payload = value.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
                            }
                            other => return Err(err(format!("line {}: unknown header key {other:?} (expected name, description, schedule, payload)", i + 1))),
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
            return Err(err(format!("segment name {name:?} must be lowercase letters, digits, '-' or '_'")));
        }
        let expected = format!("{name}.sql");
        if file.rsplit('/').next() != Some(expected.as_str()) {
            return Err(err(format!("segment {name:?} must live in a file named {expected}")));
        }
        let sql = sql_lines.join("\n").trim().trim_end_matches(';').trim().to_string();
        if sql.is_empty() {
            return Err(err("no SQL after the header".into()));
        }
        Ok(SegmentDefinition { file: file.to_string(), name, description, schedule, payload, sql })
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
    fn the_library_parses() {
        let lib = SegmentDefinition::library().unwrap();
        assert!(lib.iter().any(|d| d.name == "reactivation"));
    }
}
