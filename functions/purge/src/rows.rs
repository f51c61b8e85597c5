//! Row filters for the lake's formats: Parquet (every string column, whatever the
//! schema), JSON lines (the identity history) and audience CSV files.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::matcher::{Hit, Matcher};

/// The phone numbering region of a row of a batch (of its source's spec), for clear
/// phone numbers in raw text.
pub type RegionOf<'a> = &'a dyn Fn(&RecordBatch, usize) -> phonenumber::country::Id;

/// What a filter kept and what it took out.
#[derive(Debug, Default)]
pub struct Filtered<T> {
    pub kept: T,
    pub rows_removed: usize,
    pub values_blanked: usize,
    /// `source_key` of every row removed or blanked (the landing objects to purge too).
    pub sources: BTreeSet<String>,
    /// `anchor_id` of every row that stays with a value blanked: another person's
    /// evidence holding the suppressed value, which identity must forget too.
    pub blanked_anchors: BTreeSet<String>,
}

impl<T> Filtered<T> {
    pub fn changed(&self) -> bool {
        self.rows_removed > 0 || self.values_blanked > 0
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Filters Parquet batches: a row with a row key in any string column is removed; a
/// suppressed identifier in a nullable string column is set to null (in a non-nullable
/// one the row is removed). With `raw`, a row whose `raw` column holds a suppressed
/// identifier in clear is removed too (`rejects/`); `raw` gives the phone region of a row.
pub fn filter_batches(batches: &[RecordBatch], m: &Matcher, raw: Option<RegionOf<'_>>) -> Result<Filtered<Vec<RecordBatch>>, ArrowError> {
    let mut out = Filtered::<Vec<RecordBatch>>::default();
    for batch in batches {
        let schema = batch.schema();
        let texts: Vec<(usize, StringArray)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| is_text(f.data_type()))
            .map(|(i, _)| {
                let a = cast(batch.column(i), &DataType::Utf8)?;
                let a = a.as_any().downcast_ref::<StringArray>().cloned().ok_or_else(|| ArrowError::CastError("not text".into()))?;
                Ok((i, a))
            })
            .collect::<Result<_, ArrowError>>()?;
        let raw_col = schema.index_of("raw").ok().and_then(|i| texts.iter().find(|(c, _)| *c == i).map(|(_, a)| a.clone()));
        let column = |name: &str| schema.index_of(name).ok().and_then(|i| texts.iter().find(|(c, _)| *c == i).map(|(_, a)| a.clone()));
        let source_col = column("source_key");
        let anchor_col = column("anchor_id");
        let n = batch.num_rows();
        let mut keep = vec![true; n];
        let mut blank: Vec<Vec<bool>> = vec![vec![false; n]; texts.len()];
        for row in 0..n {
            for (t, (col, a)) in texts.iter().enumerate() {
                if a.is_null(row) {
                    continue;
                }
                match m.value(a.value(row)) {
                    Some(Hit::Row) => keep[row] = false,
                    Some(Hit::Value) if schema.field(*col).is_nullable() => blank[t][row] = true,
                    Some(Hit::Value) => keep[row] = false,
                    None => {}
                }
            }
            if let (Some(region), Some(r)) = (raw, &raw_col) {
                if keep[row] && !r.is_null(row) && !m.clear_values(r.value(row).as_bytes(), region(batch, row)).is_empty() {
                    keep[row] = false;
                }
            }
            let blanked = blank.iter().filter(|b| b[row]).count();
            if !keep[row] {
                out.rows_removed += 1;
            } else {
                out.values_blanked += blanked;
                if let Some(a) = anchor_col.as_ref().filter(|a| blanked > 0 && !a.is_null(row)) {
                    out.blanked_anchors.insert(a.value(row).to_string());
                }
            }
            if !keep[row] || blanked > 0 {
                if let Some(s) = source_col.as_ref().filter(|s| !s.is_null(row)) {
                    out.sources.insert(s.value(row).to_string());
                }
            }
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (t, (col, a)) in texts.iter().enumerate() {
            if blank[t].iter().any(|b| *b) {
                let blanked: StringArray = (0..n).map(|r| if blank[t][r] || a.is_null(r) { None } else { Some(a.value(r)) }).collect();
                columns[*col] = cast(&(Arc::new(blanked) as ArrayRef), schema.field(*col).data_type())?;
            }
        }
        let rebuilt = RecordBatch::try_new(schema.clone(), columns)?;
        let kept = filter_record_batch(&rebuilt, &BooleanArray::from(keep))?;
        if kept.num_rows() > 0 {
            out.kept.push(kept);
        }
    }
    Ok(out)
}

/// Filters JSON lines: a line mentioning a row key anywhere is removed; elsewhere an
/// array element holding a suppressed identifier is removed and a field equal to one is
/// set to null. Lines that are not JSON are kept as they are.
pub fn filter_json_lines(text: &[u8], m: &Matcher) -> Filtered<Vec<u8>> {
    let mut out = Filtered::<Vec<u8>>::default();
    for line in text.split_inclusive(|b| *b == b'\n') {
        let Ok(mut value) = serde_json::from_slice::<Value>(line) else {
            out.kept.extend_from_slice(line);
            continue;
        };
        if mentions_row(&value, m) {
            out.rows_removed += 1;
            continue;
        }
        let blanked = blank_values(&mut value, m);
        if blanked == 0 {
            out.kept.extend_from_slice(line);
        } else {
            out.values_blanked += blanked;
            out.kept.extend_from_slice(value.to_string().as_bytes());
            out.kept.push(b'\n');
        }
    }
    out
}

/// Whether any string of a document satisfies `hit`.
fn any_string(v: &Value, hit: &dyn Fn(&str) -> bool) -> bool {
    match v {
        Value::String(s) => hit(s),
        Value::Array(a) => a.iter().any(|x| any_string(x, hit)),
        Value::Object(o) => o.values().any(|x| any_string(x, hit)),
        _ => false,
    }
}

fn mentions_row(v: &Value, m: &Matcher) -> bool {
    any_string(v, &|s| m.is_row_key(s))
}

fn holds_value(v: &Value, m: &Matcher) -> bool {
    any_string(v, &|s| m.is_value(s))
}

/// Removes suppressed identifiers from a document; returns how many went.
fn blank_values(v: &mut Value, m: &Matcher) -> usize {
    match v {
        Value::Array(a) => {
            let before = a.len();
            a.retain(|x| !holds_value(x, m));
            (before - a.len()) + a.iter_mut().map(|x| blank_values(x, m)).sum::<usize>()
        }
        Value::Object(o) => o
            .values_mut()
            .map(|x| match x {
                Value::String(s) if m.is_value(s) => {
                    *x = Value::Null;
                    1
                }
                other => blank_values(other, m),
            })
            .sum(),
        _ => 0,
    }
}

/// Filters an audience CSV file (header, then one member per line): a line with a field
/// equal to one of the person's plain SHA-256 goes.
pub fn filter_audience_csv(text: &[u8], m: &Matcher) -> Filtered<Vec<u8>> {
    let mut out = Filtered::<Vec<u8>>::default();
    for (n, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        let fields = line.strip_suffix(b"\n").unwrap_or(line).split(|b| *b == b',');
        let hit = n > 0 && fields.into_iter().any(|f| std::str::from_utf8(f).is_ok_and(|f| m.audience_hash(f.trim())));
        if hit {
            out.rows_removed += 1;
        } else {
            out.kept.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::erasure::PurgeTargets;
    use arrow::datatypes::{Field, Schema};

    fn matcher() -> Matcher {
        let mut t = PurgeTargets::default();
        t.identity_keys.insert("k1".into());
        t.profile_ids.insert("p_1".into());
        t.identifier_hashes.insert("h1".into());
        Matcher::new(&t).with_audience(["aud1".to_string()])
    }

    #[test]
    fn parquet_rows_of_the_person_go_and_shared_values_are_nulled() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("anchor_id", DataType::Utf8, true),
            Field::new("email_hash", DataType::Utf8, true),
            Field::new("source_key", DataType::Utf8, false),
        ]));
        let col = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                col(vec![Some("k1"), Some("k2"), Some("k3"), None]),
                col(vec![Some("h1"), Some("h1"), Some("h2"), Some("h1")]),
                col(vec![Some("web/a.csv"), Some("web/b.csv"), Some("web/c.csv"), Some("web/d.csv")]),
            ],
        )
        .unwrap();
        let f = filter_batches(&[batch], &matcher(), None).unwrap();
        assert_eq!((f.rows_removed, f.values_blanked), (1, 2));
        assert_eq!(f.sources.into_iter().collect::<Vec<_>>(), vec!["web/a.csv", "web/b.csv", "web/d.csv"]);
        assert_eq!(f.blanked_anchors.into_iter().collect::<Vec<_>>(), vec!["k2"], "the null anchor names no evidence");
        let kept = &f.kept[0];
        assert_eq!(kept.num_rows(), 3);
        let email = kept.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((email.is_null(0), email.value(1), email.is_null(2)), (true, "h2", true));
    }

    #[test]
    fn json_lines_drop_the_person_and_lose_shared_values() {
        let text = b"{\"profile_id\":\"p_1\",\"action\":\"erased\"}\n{\"profile_id\":\"p_2\",\"identifiers\":[{\"kind\":\"email\",\"hash\":\"h1\"},{\"kind\":\"phone\",\"hash\":\"h9\"}]}\nnot json\n";
        let f = filter_json_lines(text, &matcher());
        assert_eq!((f.rows_removed, f.values_blanked), (1, 1));
        assert_eq!(
            String::from_utf8(f.kept).unwrap(),
            "{\"identifiers\":[{\"hash\":\"h9\",\"kind\":\"phone\"}],\"profile_id\":\"p_2\"}\nnot json\n"
        );
    }

    #[test]
    fn audience_lines_with_the_person_go_and_the_header_stays() {
        let f = filter_audience_csv(b"email,phone\naud1,x\ny,z\n,aud1\n", &matcher());
        assert_eq!(f.rows_removed, 2);
        assert_eq!(f.kept, b"email,phone\ny,z\n".to_vec());
    }
}
