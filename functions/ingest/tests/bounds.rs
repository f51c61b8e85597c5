//! Hostile files against the readers, the engine and the real lake sink (Parquet parts in
//! scratch space): a gzip bomb, an unclosed quote, a 100 MB line, 100,000 dates. Each
//! ends as rejected rows or a whole-file failure with its line and reason, within a
//! fraction of the ingest function's memory (measured by a counting allocator: the peak of
//! live heap bytes while the file is read).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ariane_ingest::engine::{self, Counts};
use ariane_ingest::map::FileContext;
use ariane_ingest::pipeline::LakeSink;
use ariane_ingest::source::FileError;
use ariane_ingest::spec::Spec;
use chrono::{Duration, Utc};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The measurement needs the process to itself: each test holds this from its first
/// line (building its input included) to its last.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a hostile file may add to the heap: a small part of the smallest channel ingest
/// function (512 MB in `infra/template.yaml`). Measured: 0.4 to 3.4 MiB (BENCHMARKS.md).
const BUDGET: usize = 32 << 20;

const CSV_SPEC: &str = "channel = \"crm\"\nname = \"t\"\n[format]\nkind = \"csv\"\n[event_type]\nconstant = \"contact_updated\"\n\
                        [fields]\noccurred_at = { source = \"Date\", format = \"%Y-%m-%d\" }\n\
                        customer_id = { source = \"Client\", required = true }\nfirst_name = { source = \"Note\" }\n";

const NDJSON_SPEC: &str = "channel = \"web\"\nname = \"t\"\n[format]\nkind = \"ndjson\"\n[event_type]\nconstant = \"page_view\"\n\
                           [fields]\noccurred_at = { source = \"at\", format = \"rfc3339\" }\ncookie_id = { source = \"cookie\" }\n";

fn spec(text: &str, limits: &str) -> Spec {
    Spec::parse("channels/test/t.toml", &format!("{text}{limits}")).unwrap_or_else(|e| panic!("{e}"))
}

struct Run {
    result: Result<Counts, FileError>,
    rejected: Vec<(u64, String, String)>,
    events: u64,
    peak: usize,
}

/// Parses `input` into a real lake sink and returns the outcome and the heap's peak growth
/// (the caller holds [`serial`]).
fn run(spec: &Spec, input: impl Read + Send + 'static) -> Run {
    let dir = tempfile::tempdir().expect("scratch");
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut sink = LakeSink::new(dir.path().to_path_buf()).expect("sink");
    let file = FileContext { source_key: format!("{}/hostile", spec.channel), fingerprint: "fp".into() };
    let result = engine::parse(Box::new(input), spec, file, &mut sink);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let parts = sink.finish_paths().expect("parts");
    let mut rejected = vec![];
    if let Some(path) = &parts.1 {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
            let (line, reason, raw) = (col("line"), col("reason"), col("raw"));
            let line = line.as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
            let reason = reason.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let raw = raw.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                rejected.push((line.value(i), reason.value(i).to_string(), raw.value(i).to_string()));
            }
        }
    }
    let events = result.as_ref().map(|c| c.events).unwrap_or(0);
    eprintln!("{}: peak heap growth {:.1} MiB", std::thread::current().name().unwrap_or("?"), peak as f64 / (1 << 20) as f64);
    Run { result, rejected, events, peak }
}

fn today() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

#[test]
fn a_gzip_bomb_fails_on_its_ratio_after_a_few_megabytes() {
    let _one = serial();
    // 4 GiB of blank NDJSON lines, compressed as read (level 9: a ratio near 1,000).
    let bomb = flate2::read::GzEncoder::new(BlankLines::new(4 << 30), flate2::Compression::best());
    let r = run(&spec(NDJSON_SPEC, ""), bomb);
    match r.result {
        Err(FileError::Limit { reason, .. }) => assert!(reason.contains("limits.max_compression_ratio"), "{reason}"),
        other => panic!("expected the ratio bound, got {other:?}"),
    }
    assert!(r.peak < BUDGET, "peak {} bytes", r.peak);
}

#[test]
fn a_gzip_bomb_of_zeros_in_a_csv_fails_on_the_record_bound() {
    let _one = serial();
    let mut head = format!("Date,Client,Note\n{},C1,ok\n", today()).into_bytes();
    head.extend_from_slice(b"2026-01-01,C2,");
    let bomb =
        flate2::read::GzEncoder::new(std::io::Cursor::new(head).chain(std::io::repeat(0).take(4 << 30)), flate2::Compression::fast());
    let r = run(&spec(CSV_SPEC, ""), bomb);
    match r.result {
        Err(FileError::Limit { line, reason }) => {
            assert_eq!(line, 3, "{reason}");
            assert!(reason.contains("limits.max_row_bytes") || reason.contains("limits.max_compression_ratio"), "{reason}");
        }
        other => panic!("expected a bound, got {other:?}"),
    }
    assert!(r.peak < BUDGET, "peak {} bytes", r.peak);
}

#[test]
fn the_content_bound_applies_to_plain_files_too() {
    let _one = serial();
    let text = format!("Date,Client,Note\n{}", format!("{},C1,ok\n", today()).repeat(200));
    let r = run(&spec(CSV_SPEC, "[limits]\nmax_bytes = 2048\n"), std::io::Cursor::new(text.into_bytes()));
    match r.result {
        Err(FileError::Limit { reason, .. }) => assert!(reason.contains("limits.max_bytes"), "{reason}"),
        other => panic!("expected the size bound, got {other:?}"),
    }
}

#[test]
fn an_unclosed_quote_fails_the_file_at_its_line() {
    let _one = serial();
    // The quote opened on line 3 is never closed: 50 MB of text with newlines follow.
    let head = format!("Date,Client,Note\n{d},C1,ok\n{d},C2,\"never closed\n", d = today());
    let tail = b"more text, and a comma\n".repeat(50 << 20 >> 5);
    let r = run(&spec(CSV_SPEC, ""), std::io::Cursor::new(head.into_bytes()).chain(std::io::Cursor::new(tail)));
    match r.result {
        Err(FileError::Limit { line, reason }) => {
            assert_eq!(line, 3, "{reason}");
            assert!(reason.contains("unclosed quote"), "{reason}");
        }
        other => panic!("expected the record bound, got {other:?}"),
    }
    assert!(r.peak < BUDGET, "peak {} bytes", r.peak);
}

#[test]
fn a_long_csv_field_is_a_rejected_row() {
    let _one = serial();
    let long = "x".repeat(70_000);
    let text = format!("Date,Client,Note\n{d},C1,{long}\n{d},C2,short\n", d = today());
    let r = run(&spec(CSV_SPEC, ""), std::io::Cursor::new(text.into_bytes()));
    let counts = r.result.expect("the file is read");
    assert_eq!((counts.events, counts.rejected), (1, 1));
    assert_eq!(r.rejected[0].0, 2);
    assert!(r.rejected[0].1.contains("field 3 is 70000 bytes"), "{}", r.rejected[0].1);
    assert_eq!(r.rejected[0].2, "", "an oversized row is not copied into the rejects");
}

#[test]
fn a_100_mb_ndjson_line_is_a_rejected_row_and_the_next_line_is_read() {
    let _one = serial();
    let first = std::io::Cursor::new(b"{\"at\":\"".to_vec());
    let huge = std::io::repeat(b'a').take(100 << 20);
    let rest = format!("\"}}\n{{\"at\":\"{}T10:00:00Z\",\"cookie\":\"c1\"}}\n", today());
    let input = first.chain(huge).chain(std::io::Cursor::new(rest.into_bytes()));
    let r = run(&spec(NDJSON_SPEC, ""), input);
    let counts = r.result.expect("the file is read");
    assert_eq!((counts.rows_read, counts.events, counts.rejected), (2, 1, 1));
    assert_eq!(r.rejected[0].0, 1);
    assert!(r.rejected[0].1.contains("a line of 104857610 bytes, longer than 1048576"), "{}", r.rejected[0].1);
    assert!(r.peak < BUDGET, "peak {} bytes", r.peak);
}

#[test]
fn a_long_json_string_is_a_rejected_row() {
    let _one = serial();
    let text = format!("{{\"at\":\"{}T10:00:00Z\",\"cookie\":\"{}\"}}\n", today(), "c".repeat(70_000));
    let r = run(&spec(NDJSON_SPEC, ""), std::io::Cursor::new(text.into_bytes()));
    let counts = r.result.expect("the file is read");
    assert_eq!(counts.rejected, 1);
    assert!(r.rejected[0].1.contains("limits.max_field_bytes"), "{}", r.rejected[0].1);
}

#[test]
fn a_file_of_100000_dates_fails_at_the_first_date_past_the_bound() {
    let _one = serial();
    // One row per day going back from today: 1,000 dates are accepted, the 1,001st fails
    // the file before a part is opened for it.
    let today = Utc::now();
    let mut text = String::from("Date,Client,Note\n");
    for i in 0..100_000i64 {
        text.push_str(&format!("{},C{i},n\n", (today - Duration::days(i)).format("%Y-%m-%d")));
    }
    let r = run(&spec(CSV_SPEC, ""), std::io::Cursor::new(text.into_bytes()));
    match r.result {
        Err(FileError::Limit { line, reason }) => {
            assert_eq!(line, 1_002, "{reason}");
            assert!(reason.contains("more than 1000 distinct event dates (limits.max_dates)"), "{reason}");
        }
        other => panic!("expected the dates bound, got {other:?}"),
    }
    assert!(r.peak < BUDGET, "peak {} bytes", r.peak);
}

#[test]
fn dates_outside_the_plausible_window_are_rejected_rows() {
    let _one = serial();
    let far = (Utc::now() + Duration::days(40)).format("%Y-%m-%d");
    let text = format!("Date,Client,Note\n1970-01-01,C1,epoch zero\n{},C2,ok\n{far},C3,next month\n", today());
    let r = run(&spec(CSV_SPEC, ""), std::io::Cursor::new(text.into_bytes()));
    let counts = r.result.expect("the file is read");
    assert_eq!((counts.events, counts.rejected), (1, 2));
    assert_eq!(r.rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4]);
    assert!(r.rejected[0].1.contains("event time 1970-01-01T00:00:00Z is outside the plausible window"), "{}", r.rejected[0].1);
    // The window is the spec's: a CRM export with a long history can widen it.
    let text = "Date,Client,Note\n1970-01-01,C1,epoch zero\n";
    let r = run(&spec(CSV_SPEC, "[limits]\npast_days = 36000\n"), std::io::Cursor::new(text.as_bytes().to_vec()));
    assert_eq!(r.result.expect("read").events, 1);
}

#[test]
fn rows_past_the_bound_fail_the_file() {
    let _one = serial();
    let text = format!("Date,Client,Note\n{}", format!("{},C1,n\n", today()).repeat(11));
    let r = run(&spec(CSV_SPEC, "[limits]\nmax_rows = 10\n"), std::io::Cursor::new(text.into_bytes()));
    match r.result {
        Err(FileError::Limit { line, reason }) => {
            assert_eq!((line, reason.as_str()), (12, "the file has more than 10 rows (limits.max_rows)"))
        }
        other => panic!("expected the rows bound, got {other:?}"),
    }
    assert_eq!(r.events, 0);
}

#[test]
fn limits_are_validated_with_the_spec() {
    let _one = serial();
    let err = Spec::parse("channels/crm/t.toml", &format!("{CSV_SPEC}[limits]\nmax_dates = 0\n")).unwrap_err();
    assert_eq!(err.to_string(), "channels/crm/t.toml: limits.max_dates: 0: expected 1 to 100000");
    let err = Spec::parse("channels/crm/t.toml", &format!("{CSV_SPEC}[limits]\nmax_lines = 3\n")).unwrap_err();
    assert!(err.to_string().contains("max_lines"), "{err}");
}

/// `total` bytes of 99 spaces and a newline, generated as read.
struct BlankLines {
    left: u64,
    at: usize,
}

impl BlankLines {
    fn new(total: u64) -> Self {
        BlankLines { left: total, at: 0 }
    }
}

impl Read for BlankLines {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            *b = if self.at == 99 { b'\n' } else { b' ' };
            self.at = (self.at + 1) % 100;
        }
        self.left -= n as u64;
        Ok(n)
    }
}
