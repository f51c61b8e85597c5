//! Reading a measure's result (Arrow batches) back into Rust values by column name.

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::MeasuresError;

/// The rows of one measure.
#[derive(Clone, Debug)]
pub struct Table {
    pub measure: String,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    fn problem(&self, problem: String) -> MeasuresError {
        MeasuresError::Result { measure: self.measure.clone(), problem }
    }

    /// Every batch's column `name` cast to `to`.
    fn column(&self, name: &str, to: &DataType) -> Result<Vec<ArrayRef>, MeasuresError> {
        self.batches
            .iter()
            .map(|b| {
                let c = b.column_by_name(name).ok_or_else(|| self.problem(format!("no column {name:?}")))?;
                cast(c, to).map_err(|e| self.problem(format!("column {name:?}: {e}")))
            })
            .collect()
    }

    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>, MeasuresError> {
        let mut out = Vec::with_capacity(self.rows());
        for c in self.column(name, &DataType::Utf8)? {
            out.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
        }
        Ok(out)
    }

    pub fn ints(&self, name: &str) -> Result<Vec<Option<i64>>, MeasuresError> {
        let mut out = Vec::with_capacity(self.rows());
        for c in self.column(name, &DataType::Int64)? {
            out.extend(c.as_primitive::<Int64Type>().iter());
        }
        Ok(out)
    }

    pub fn floats(&self, name: &str) -> Result<Vec<Option<f64>>, MeasuresError> {
        let mut out = Vec::with_capacity(self.rows());
        for c in self.column(name, &DataType::Float64)? {
            out.extend(c.as_primitive::<Float64Type>().iter());
        }
        Ok(out)
    }

    pub fn times(&self, name: &str) -> Result<Vec<Option<DateTime<Utc>>>, MeasuresError> {
        let mut out = Vec::with_capacity(self.rows());
        for c in self.column(name, &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))? {
            out.extend(c.as_primitive::<TimestampMicrosecondType>().iter().map(|v| v.and_then(DateTime::from_timestamp_micros)));
        }
        Ok(out)
    }

    pub fn dates(&self, name: &str) -> Result<Vec<Option<NaiveDate>>, MeasuresError> {
        self.strings(name)?
            .into_iter()
            .map(|v| match v {
                None => Ok(None),
                Some(s) => {
                    NaiveDate::parse_from_str(&s, "%Y-%m-%d").map(Some).map_err(|e| self.problem(format!("column {name:?}: {s:?}: {e}")))
                }
            })
            .collect()
    }

    /// A count column (null and negative read as 0).
    pub fn counts(&self, name: &str) -> Result<Vec<u64>, MeasuresError> {
        Ok(self.ints(name)?.into_iter().map(|v| v.unwrap_or(0).max(0) as u64).collect())
    }

    /// The value of a required column in a row.
    pub fn required<T>(&self, name: &str, row: usize, value: Option<T>) -> Result<T, MeasuresError> {
        value.ok_or_else(|| self.problem(format!("row {row}: {name} is empty")))
    }
}
