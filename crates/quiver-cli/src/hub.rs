//! Models by name from the Hugging Face Hub (cargo feature `hub`, on by
//! default): `--model sentence-transformers/all-MiniLM-L6-v2` downloads the
//! files a model directory needs into a cache, once.
//!
//! It runs the system's `curl` rather than linking an HTTP and TLS stack:
//! the dependency tree stays small, and a machine without a network gets a
//! clear error. Each file is written to `.part` and renamed, so a cache
//! never holds half a model.

// Without the feature only `looks_like_hub_id` is used (for a clear error).
#![cfg_attr(not(feature = "hub"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::output::{input, CliResult, Failure};

const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
const OPTIONAL: [&str; 4] = [
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "modules.json",
    "config_sentence_transformers.json",
];

/// True for `owner/name` (the shape of a Hub model id).
pub(crate) fn looks_like_hub_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Where Hub models are cached: `$QUIVER_MODEL_CACHE`, else `~/.cache/quiver/models`.
fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("QUIVER_MODEL_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("quiver").join("models")
}

/// The local directory of Hub model `id`, downloading what is missing.
pub(crate) fn fetch(id: &str) -> CliResult<PathBuf> {
    let dir = cache_root().join(id.replace('/', "--"));
    if REQUIRED.iter().all(|f| dir.join(f).is_file()) {
        return Ok(dir);
    }
    for file in REQUIRED {
        download(id, file, &dir, true)?;
    }
    for file in OPTIONAL {
        download(id, file, &dir, false)?;
    }
    // The pooling settings where modules.json says they are, if not the usual place.
    if let Some(path) = pooling_path(&dir) {
        download(id, &format!("{path}/config.json"), &dir, false)?;
    }
    Ok(dir)
}

/// The Pooling module's directory that `modules.json` names, when it is a
/// plain relative path other than `1_Pooling`.
fn pooling_path(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("modules.json")).ok()?;
    let modules: serde_json::Value = serde_json::from_str(&text).ok()?;
    let path = modules.as_array()?.iter().find_map(|m| {
        let kind = m.get("type")?.as_str()?;
        kind.ends_with(".Pooling")
            .then(|| m.get("path")?.as_str().map(String::from))?
    })?;
    let plain = !path.is_empty()
        && path != "1_Pooling"
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    plain.then_some(path)
}

fn download(id: &str, file: &str, dir: &Path, required: bool) -> CliResult<()> {
    let dest = dir.join(file);
    if dest.is_file() {
        return Ok(());
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Internal(format!("cannot create {}: {e}", parent.display())))?;
    }
    let part = dest.with_extension("part");
    let url = format!("https://huggingface.co/{id}/resolve/main/{file}");
    let out = Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--max-time",
            "600",
            "--output",
        ])
        .arg(&part)
        .arg(&url)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(Failure::Internal(format!(
                "fetching {id} from the Hugging Face Hub needs curl: {e}"
            )))
        }
    };
    if out.status.success() {
        std::fs::rename(&part, &dest)
            .map_err(|e| Failure::Internal(format!("cannot write {}: {e}", dest.display())))?;
        return Ok(());
    }
    let _ = std::fs::remove_file(&part);
    if !required {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', " ");
    if why.contains("404") {
        return input(format!(
            "no model {id} on the Hugging Face Hub ({file}: {why})"
        ));
    }
    Err(Failure::Internal(format!(
        "cannot fetch {id} from the Hugging Face Hub ({file}: {why}); without a network, give --model a local directory"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        for not in [
            "model",
            "/abs/path",
            "a/b/c",
            "./x",
            "../x/y",
            "a/",
            "a b/c",
        ] {
            assert!(!looks_like_hub_id(not), "{not}");
        }
    }
}
