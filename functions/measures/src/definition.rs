//! Measure definition files (`measures/*.sql`): a header of `-- name:` and
//! `-- description:` lines, documentation comments, then one SQL query over the segments'
//! catalog (`events`, `profiles`, `orders`, `order_lines`, `carts`, see `docs/segments.md`)
//! with the run parameters `{{run_at}}`, `{{run_date}}`, `{{run_date-N}}`.
//!
//! ```sql
//! -- name: channel-kpis
//! -- description: What each channel did, week by week.
//! --
//! -- Columns, for a marketer: ...
//! SELECT ...
//! ```
//!
//! A header line is `-- key: value` where `key` is one lowercase word; other comment lines
//! (capitalised, or several words before a colon) are documentation. An unknown header key
//! is an error, so a misspelt `-- nme:` does not silently drop the name.
//!
//! Definitions are validated like segments ([`validate`]): planned by DataFusion over empty
//! tables of the lake's schemas; a measure the run reads in Rust ([`REQUIRED`]) must exist
//! and return its columns. Every problem names the file.

use std::collections::BTreeSet;

use ariane_segments::catalog;
pub use ariane_segments::definition::DefinitionError;
use ariane_segments::definition::SqlFile;
use chrono::{DateTime, Utc};

/// A parsed measure file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasureDefinition {
    pub file: String,
    pub name: String,
    pub description: String,
    pub sql: String,
}

/// The measures the run reads back in Rust, and the columns it reads.
pub const REQUIRED: &[(&str, &[&str])] = &[
    ("channel-kpis", &["channel", "week_start", "people_reached", "orders", "revenue_minor"]),
    ("funnel", &["entry_channel", "visitors", "carted", "checked_out", "ordered"]),
    ("cross-channel", &["people_reached", "customers", "multi_channel_share", "research_online_purchase_offline"]),
    ("touchpoints", &["profile_id", "at", "channel", "campaign_id", "kind", "source"]),
    ("conversions", &["profile_id", "order_id", "channel", "ordered_at", "amount_minor"]),
    ("spend", &["channel", "campaign", "spend_minor"]),
];

impl MeasureDefinition {
    /// Parses one file; a problem names the file (and the line for a header).
    pub fn parse(file: &str, text: &str) -> Result<Self, DefinitionError> {
        let parsed = SqlFile::parse(file, text, "measure", &["name", "description"])?;
        let description = parsed.headers.iter().rev().find(|h| h.key == "description").map(|h| h.value.clone()).unwrap_or_default();
        if description.is_empty() {
            return Err(DefinitionError {
                file: file.to_string(),
                problem: "missing `-- description:` header (one line for people)".into(),
            });
        }
        Ok(MeasureDefinition { file: file.to_string(), name: parsed.name, description, sql: parsed.sql })
    }

    /// The built-in library (`measures/*.sql`), embedded at build time.
    pub fn library() -> Result<Vec<MeasureDefinition>, DefinitionError> {
        crate::MEASURE_FILES.iter().map(|(file, text)| Self::parse(&format!("measures/{file}"), text)).collect()
    }
}

/// The tables the run writes itself (attribution and paths): no SQL measure may take
/// their names, its result would overwrite theirs.
pub const RESERVED: &[&str] = &["attribution-by-channel", "attribution-by-campaign", "top-paths", crate::run::SPEND_RETURN];

/// [`validate`] and [`missing_required`]: empty when the library can be deployed.
pub async fn validate_library(definitions: &[MeasureDefinition], run_at: DateTime<Utc>) -> Vec<DefinitionError> {
    let mut errors = validate(definitions, run_at).await;
    errors.extend(missing_required(definitions));
    errors
}

/// The measures of [`REQUIRED`] that `definitions` lack (the run reads them).
pub fn missing_required(definitions: &[MeasureDefinition]) -> Vec<DefinitionError> {
    REQUIRED
        .iter()
        .filter(|(name, _)| !definitions.iter().any(|d| d.name == *name))
        .map(|(name, _)| DefinitionError {
            file: format!("measures/{name}.sql"),
            problem: "missing: the measures run needs this measure".into(),
        })
        .collect()
}

/// Plans each definition against the lake's schemas (over empty tables, rendered at
/// `run_at`): a syntax error, an unknown table or column, a bad run parameter, a name
/// defined twice, a measure of [`REQUIRED`] lacking a column the run reads.
pub async fn validate(definitions: &[MeasureDefinition], run_at: DateTime<Utc>) -> Vec<DefinitionError> {
    // The segments' catalog plus Ariane's own campaign sends (`activations`), which
    // measures read and segments do not.
    let session = async {
        let ctx = catalog::validation_session(run_at).await?;
        catalog::register_empty_activations(&ctx)?;
        Ok::<_, datafusion::error::DataFusionError>(ctx)
    };
    let ctx = match session.await {
        Ok(ctx) => ctx,
        Err(e) => return vec![DefinitionError { file: "<catalog>".into(), problem: e.to_string() }],
    };
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for def in definitions {
        let err = |problem: String| DefinitionError { file: def.file.clone(), problem };
        if !names.insert(def.name.clone()) {
            errors.push(err(format!("measure name {:?} is defined twice", def.name)));
        }
        if RESERVED.contains(&def.name.as_str()) {
            errors.push(err(format!("measure name {:?} is reserved: the run writes that table itself", def.name)));
        }
        match catalog::plan_schema(&ctx, &def.sql, run_at).await {
            Err(problem) => errors.push(err(problem)),
            Ok(schema) => {
                if let Some((_, columns)) = REQUIRED.iter().find(|(n, _)| *n == def.name) {
                    for c in columns.iter().filter(|c| !schema.fields().iter().any(|f| f.name() == *c)) {
                        errors.push(err(format!("the query must return a column {c:?} (the measures run reads it)")));
                    }
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T05:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_header_documentation_and_sql() {
        let d = MeasureDefinition::parse(
            "measures/x.sql",
            "-- name: x\n-- description: A test.\n--\n-- Period: the last days.\n-- Columns, for a marketer:\n--   n   people: all\nSELECT 1 AS n;\n",
        )
        .unwrap();
        assert_eq!((d.name.as_str(), d.description.as_str(), d.sql.as_str()), ("x", "A test.", "SELECT 1 AS n"));
    }

    #[test]
    fn header_problems_name_the_file() {
        let cases = [
            ("SELECT 1", "name"),
            ("-- name: y\n-- description: d\nSELECT 1", "y.sql"),
            ("-- name: x\n-- nme: d\nSELECT 1", "nme"),
            ("-- name: x\nSELECT 1", "description"),
            ("-- name: x\n-- description: d\n", "no SQL"),
            ("-- name: X\n-- description: d\nSELECT 1", "lowercase"),
        ];
        for (text, expected) in cases {
            let e = MeasureDefinition::parse("measures/x.sql", text).unwrap_err();
            assert_eq!(e.file, "measures/x.sql");
            assert!(e.to_string().starts_with("measures/x.sql: ") && e.problem.contains(expected), "{text:?}: {e}");
        }
    }

    #[tokio::test]
    async fn the_library_parses_and_validates() {
        let lib = MeasureDefinition::library().unwrap();
        let names: Vec<&str> = lib.iter().map(|d| d.name.as_str()).collect();
        for (required, _) in REQUIRED {
            assert!(names.contains(required), "{required} in {names:?}");
        }
        let errors = validate_library(&lib, at()).await;
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[tokio::test]
    async fn a_broken_file_fails_validation_naming_the_file_and_the_problem() {
        let mut lib = MeasureDefinition::library().unwrap();
        let broken = [
            ("measures/bad-column.sql", "-- name: bad-column\n-- description: d\nSELECT no_such_column FROM events", "no_such_column"),
            ("measures/bad-table.sql", "-- name: bad-table\n-- description: d\nSELECT * FROM sales", "sales"),
            (
                "measures/bad-param.sql",
                "-- name: bad-param\n-- description: d\nSELECT * FROM events WHERE event_date > {{yesterday}}",
                "yesterday",
            ),
            ("measures/top-paths.sql", "-- name: top-paths\n-- description: d\nSELECT 1 AS n", "reserved"),
        ];
        for (file, text, _) in broken {
            lib.push(MeasureDefinition::parse(file, text).unwrap());
        }
        let errors = validate(&lib, at()).await;
        assert_eq!(errors.len(), broken.len(), "{errors:?}");
        for ((file, _, problem), e) in broken.iter().zip(&errors) {
            assert_eq!(&e.file, file);
            assert!(e.problem.contains(problem), "{e}");
        }

        // A required measure without a column the run reads, and one missing altogether.
        let mut lib = MeasureDefinition::library().unwrap();
        lib.retain(|d| d.name != "funnel");
        let conversions = lib.iter_mut().find(|d| d.name == "conversions").unwrap();
        conversions.sql = "SELECT profile_id, order_id, channel, ordered_at FROM orders".into();
        let errors = validate_library(&lib, at()).await;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "measures/conversions.sql: the query must return a column \"amount_minor\" (the measures run reads it)",
                "measures/funnel.sql: missing: the measures run needs this measure",
            ]
        );
    }
}
