//! Running the real `quiver` binary in temporary directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quiver"))
}

/// Run `quiver --store DIR ARGS...` to completion.
pub fn quiver(store: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run quiver")
}

pub fn ok(store: &Path, args: &[&str]) -> String {
    let out = quiver(store, args);
    assert!(
        out.status.success(),
        "quiver {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.f32()).collect()
    }
}

pub fn json_vector(v: &[f32]) -> String {
    serde_json::to_string(v).unwrap()
}

/// Bytes of every file of a store, by relative path.
pub fn store_bytes(store: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.strip_prefix(store).unwrap().display().to_string();
            let bytes = std::fs::read(&p).unwrap();
            out.push((name, bytes));
        }
    }
    out.sort();
    out
}

/// The ids of a search output line's hits, in order.
pub fn hit_ids(line: &serde_json::Value) -> Vec<&str> {
    line["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect()
}

/// The message of a failed command's stderr: its first line. Anything
/// after it must be clap's usage block (a usage error keeps it, for
/// people), never more message.
pub fn message_line(stderr: &str) -> &str {
    let mut lines = stderr.trim_end().lines();
    let first = lines.next().unwrap_or("");
    for l in lines {
        assert!(
            l.is_empty()
                || l.starts_with("Usage:")
                || l.starts_with("  ")
                || l.starts_with("For more information"),
            "more than one line of message: {stderr:?}"
        );
    }
    first
}

/// Each line of `text` as JSON.
pub fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// `quiver ARGS` is bad input: exit 2, one line on stderr naming `needle`,
/// and the store byte for byte as it was.
pub fn refused(store: &Path, args: &[&str], needle: &str) {
    let before = store_bytes(store);
    let out = quiver(store, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should mention {needle:?}"
    );
    assert!(store_bytes(store) == before, "{args:?} changed the store");
}
