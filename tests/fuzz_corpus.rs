//! Replays the saved fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! checks as the fuzz targets, so CI covers it without running a fuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} corpus files of {target} fail: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn set_cookie_corpus() {
    replay("set_cookie", checks::set_cookie);
}

#[test]
fn cookie_vet_corpus() {
    replay("cookie_vet", checks::cookie_vet);
}

#[test]
fn url_strip_corpus() {
    replay("url_strip", checks::url_strip);
}
