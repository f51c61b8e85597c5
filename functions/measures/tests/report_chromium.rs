//! The HTML report in a real browser: renders the sample report in French and English,
//! opens each page in headless Chromium with the network off, and checks that
//!
//! - the page logs nothing to the console (see below),
//! - every `data-chart` SVG of the DOM Chromium built has as many `data-value` marks as the
//!   input has data points,
//! - a screenshot can be taken; the PNG is kept as the test artefact in
//!   `$CARGO_TARGET_DIR/test-artefacts/report/` (`target/test-artefacts/report/` when
//!   `CARGO_TARGET_DIR` is unset), next to the HTML files.
//!
//! Network off: the page itself has no URL (checked on the HTML) and a
//! `Content-Security-Policy` of `default-src 'none'`; Chromium runs with
//! `--proxy-server=127.0.0.1:9 --proxy-bypass-list=<-loopback>`, so any request it would
//! still make goes to a closed port.
//!
//! Console: Chromium runs with `--enable-logging=stderr --v=0`, which prints every console
//! message of the page on stderr as `…:INFO:CONSOLE:<line>] "<message>", source: <url>`.
//! That log line does not say the message's level (error, warning and log all come out as
//! INFO), and CSP violations and uncaught exceptions come out the same way, so the test is
//! strict: the report has no script at all, hence *any* console line is a failure. The
//! `console_capture_works` test proves the capture on the installed Chromium: a canary page
//! whose script calls `console.error` and throws must produce those lines.
//!
//! Chromium is the Debian package (`scripts/chromium.sh` installs it; `CHROMIUM` overrides
//! the binary). Without it the test fails, it never skips: in CI (`CI` set) and locally.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ariane_measures::report::{drawn_charts, render, sample_in, Locale, ReportData};

const TIMEOUT: Duration = Duration::from_secs(120);

fn artefact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artefacts").join("report");
    std::fs::create_dir_all(&dir).expect("create the artefact directory");
    dir.canonicalize().expect("artefact directory")
}

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let ci = if std::env::var_os("CI").is_some() { " (CI is set: this test never skips)" } else { "" };
    panic!(
        "headless Chromium is needed to test the HTML report and `chromium` is not on PATH{ci}: \
         run scripts/chromium.sh (installs the Debian package), or set CHROMIUM to the binary"
    );
}

fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => url.push(byte as char),
            _ => url.push_str(&format!("%{byte:02X}")),
        }
    }
    url
}

struct Run {
    stdout: String,
    /// The page's console messages (lines of Chromium's log with `:CONSOLE`).
    console: Vec<String>,
}

/// Runs headless Chromium on `url` with the network off and the console on stderr.
fn run_chromium(profile: &str, extra: &[String], url: &str) -> Run {
    let profile_dir = artefact_dir().join(format!("profile-{profile}"));
    let _ = std::fs::remove_dir_all(&profile_dir);
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("start {:?}: {e} (run scripts/chromium.sh)", chromium()));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?} on {url}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let _ = std::fs::remove_dir_all(&profile_dir);
    assert!(status.success(), "chromium failed ({status}) on {url}:\n{stderr}");
    let console = stderr.lines().filter(|line| line.contains(":CONSOLE")).map(str::to_owned).collect();
    Run { stdout, console }
}

/// Data points per chart, computed from the input alone, in page order.
fn data_points(data: &ReportData) -> Vec<(String, usize)> {
    let trend = data.weekly_trend.len();
    let roas = data.spend_return.iter().flat_map(|s| &s.by_model).filter(|m| m.roas.is_some()).count();
    [
        ("trend-people-reached", trend),
        ("trend-orders", trend),
        ("trend-revenue", trend),
        ("funnel", data.funnel.overall.map_or(0, |_| 4)),
        ("funnel-by-channel", 4 * data.funnel.by_entry_channel.len()),
        ("attribution-conversions", data.attribution.len()),
        ("attribution-revenue", data.attribution.len()),
        ("top-paths", data.top_paths.len()),
        ("campaign-lift", data.campaign_lift.len()),
        ("roas", roas),
    ]
    .into_iter()
    .map(|(name, n)| (name.to_owned(), n))
    .collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "PNG too short");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    (be(16), be(20))
}

fn check_locale(locale: Locale, tag: &str) {
    let dir = artefact_dir();
    let data = sample_in(locale);
    let html = render(&data);
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("http://") && !lower.contains("https://"), "the report must not contain any http(s) URL");
    let page = dir.join(format!("report-{tag}.html"));
    std::fs::write(&page, &html).expect("write the report");
    let url = file_url(&page);

    // The DOM as Chromium built it, and the console while it did.
    let run = run_chromium(&format!("{tag}-dom"), &["--dump-dom".to_owned()], &url);
    assert!(run.console.is_empty(), "the {tag} report logged to the console:\n{}", run.console.join("\n"));
    assert!(run.stdout.contains("</html>"), "no DOM dumped for {tag}");
    assert!(run.stdout.contains(&format!("<html lang=\"{tag}\">")));
    let expected = data_points(&data);
    assert!(expected.iter().all(|(_, n)| *n > 0), "the sample fills every chart");
    let drawn: Vec<(String, usize)> = drawn_charts(&run.stdout).into_iter().map(|c| (c.name, c.marks)).collect();
    assert_eq!(drawn, expected, "data-value marks per chart in the {tag} DOM");

    // The screenshot, kept as the artefact.
    let screenshot = dir.join(format!("report-{tag}.png"));
    let _ = std::fs::remove_file(&screenshot);
    let run = run_chromium(
        &format!("{tag}-png"),
        &[format!("--screenshot={}", screenshot.display()), "--window-size=1280,5600".to_owned()],
        &url,
    );
    assert!(run.console.is_empty(), "the {tag} report logged to the console:\n{}", run.console.join("\n"));
    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert_eq!(png_size(&png), (1280, 5600));
    assert!(png.len() > 50_000, "the screenshot is suspiciously small ({} bytes): blank page?", png.len());
    eprintln!("screenshot of the {tag} report: {}", screenshot.display());
}

#[test]
fn french_report_in_headless_chromium() {
    check_locale(Locale::Fr, "fr");
}

#[test]
fn english_report_in_headless_chromium() {
    check_locale(Locale::En, "en");
}

/// The console capture itself: a page that logs an error and throws must be caught.
#[test]
fn console_capture_works() {
    let page = artefact_dir().join("console-canary.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>canary</title></head>\
         <body><p>canary</p><script>console.error(\"ariane-console-canary\");\
         undefinedAraineFunction();</script></body></html>",
    )
    .expect("write the canary page");
    let run = run_chromium("canary", &["--dump-dom".to_owned()], &file_url(&page));
    let console = run.console.join("\n");
    assert!(console.contains("ariane-console-canary"), "console.error not captured:\n{console}");
    assert!(console.contains("undefinedAraineFunction"), "uncaught error not captured:\n{console}");
}
