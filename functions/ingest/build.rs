//! Embeds the channel specs (`<workspace>/channels/<channel>/<format>.toml`) into the
//! binary, so the specs reviewed in git are exactly the ones deployed.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../../channels");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in std::fs::read_dir(&root).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default() {
        if !dir.is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", dir.display());
        if let Ok(rd) = std::fs::read_dir(&dir) {
            files.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")));
        }
    }
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let channel = f.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).expect("UTF-8 dir name");
        let name = f.file_name().and_then(|n| n.to_str()).expect("UTF-8 file name");
        let path = f.canonicalize().expect("spec file path");
        writeln!(out, "    (\"channels/{channel}/{name}\", include_str!({:?})),", path.display().to_string()).expect("write");
    }
    out.push_str("]\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("channel_specs.rs");
    std::fs::write(dest, out).expect("write generated spec list");
}
