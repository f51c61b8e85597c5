//! The one build-script helper that embeds a library of reviewed files into a function's
//! binary (channel specs into `ingest`, segment SQL into `segments`, campaigns into
//! `activate`), so what was reviewed in git is exactly what is deployed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How an embedded file is named in the generated list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// The file name alone (`reactivation.sql`).
    FileName,
    /// The path from the workspace root (`channels/pos/receipts.toml`).
    FromRoot,
}

/// Writes `$OUT_DIR/<out>`: a Rust expression `&[(name, include_str!(path)), ...]` of the
/// files ending in `.<ext>` in `<workspace>/<dir>` (and in its sub-folders, one level, when
/// `nested`), sorted by path, and tells cargo to rerun when any of them changes. To be
/// called from a function crate's `build.rs` (the workspace is two folders up) and used as
/// `include!(concat!(env!("OUT_DIR"), "/<out>"))`.
pub fn embed_files(dir: &str, ext: &str, nested: bool, names: Names, out: &str) {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let base = root.join(dir);
    println!("cargo:rerun-if-changed={}", base.display());
    let mut files = files_with(&base, ext);
    if nested {
        for sub in subfolders(&base) {
            println!("cargo:rerun-if-changed={}", sub.display());
            files.extend(files_with(&sub, ext));
        }
    }
    files.sort();
    let root = root.canonicalize().expect("the workspace root exists");
    let mut text = String::from("&[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let path = f.canonicalize().expect("an embedded file's path");
        let name = match names {
            Names::FileName => path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name").to_string(),
            Names::FromRoot => path.strip_prefix(&root).expect("under the workspace").to_str().expect("a UTF-8 path").to_string(),
        };
        writeln!(text, "    ({name:?}, include_str!({:?})),", path.display().to_string()).expect("write to a string");
    }
    text.push_str("]\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(out);
    std::fs::write(dest, text).expect("write the generated file list");
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext)).collect())
        .unwrap_or_default()
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
}
