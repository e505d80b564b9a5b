//! `quiver demo`: the main job on bundled data. Builds a store from 2,000
//! real PyPI package summaries (all-MiniLM-L6-v2 vectors), reopens it from
//! its snapshot, runs searches, and prints neighbours, recall against exact
//! search, and timings.

use std::path::PathBuf;
use std::time::Instant;

use quiver::{CollectionConfig, Include, Record, SearchOptions, Store};
use serde::Deserialize;

use crate::output::{CliResult, Failure, Out};
use crate::vectors::le_f32s;

const SAMPLE: &str = include_str!("../data/sample.jsonl");
const SAMPLE_VECTORS: &[u8] = include_bytes!("../data/sample.f32");
const QUERIES: &str = include_str!("../data/queries.jsonl");
const QUERY_VECTORS: &[u8] = include_bytes!("../data/queries.f32");
const DIM: usize = 384;

#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Keep the demo store in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    #[command(flatten)]
    no_store: crate::NoStore,
}

#[derive(Deserialize)]
struct SampleLine {
    id: String,
    text: Option<String>,
    metadata: Option<serde_json::Value>,
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::Internal(e.to_string())
}

pub(crate) fn run(args: &DemoArgs, out: &mut Out) -> CliResult<()> {
    let (dir, temporary) = match &args.keep {
        Some(d) => {
            if d.exists() {
                return crate::output::input(format!("--keep: {} already exists", d.display()));
            }
            (d.clone(), false)
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let d =
                std::env::temp_dir().join(format!("quiver-demo-{}-{nanos}", std::process::id()));
            (d, true)
        }
    };
    let result = demo(&dir, out);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn demo(dir: &std::path::Path, out: &mut Out) -> CliResult<()> {
    let vectors = le_f32s(SAMPLE_VECTORS);
    let mut records = Vec::new();
    for (line, v) in SAMPLE.lines().zip(vectors.chunks_exact(DIM)) {
        let l: SampleLine = serde_json::from_str(line).map_err(internal)?;
        records.push(Record {
            id: l.id,
            vector: v.to_vec(),
            text: l.text,
            metadata: l.metadata,
            expires_at: None,
        });
    }
    let query_vectors = le_f32s(QUERY_VECTORS);
    let query_texts: Vec<String> = QUERIES
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["text"].as_str().map(String::from))
                .unwrap_or_default()
        })
        .collect();

    out.line(&format!(
        "Quiver demo: {} PyPI package summaries, all-MiniLM-L6-v2 vectors ({DIM}-d, cosine)",
        records.len()
    ))?;
    out.line(&format!("store: {}", dir.display()))?;

    // Ingest: durable batches of 500.
    let t = Instant::now();
    let store = Store::open(dir)?;
    let coll = store.create_collection("pypi", &CollectionConfig::new(DIM))?;
    for chunk in records.chunks(500) {
        coll.upsert(chunk)?;
    }
    let ingest = t.elapsed().as_secs_f64();
    out.line(&format!(
        "import   {} records in {} transactions: {:.2} s ({:.0} records/s, each batch fsynced)",
        records.len(),
        records.len().div_ceil(500),
        ingest,
        records.len() as f64 / ingest
    ))?;
    let t = Instant::now();
    coll.flush()?;
    let snap = coll.info()?.snapshot.map_or(0, |s| s.bytes);
    out.line(&format!(
        "flush    snapshot of {:.1} MB written atomically in {:.1} ms",
        snap as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3
    ))?;
    drop(coll);
    store.close()?;

    // Reopen: the index comes from the snapshot, not a rebuild.
    let t = Instant::now();
    let store = Store::open(dir)?;
    let coll = store.get_collection("pypi")?;
    let info = coll.info()?;
    out.line(
        &format!(
            "reopen   index from {:?} in {:.1} ms (tail replayed: {}; open + load {:.1} ms)",
            info.load.source,
            info.load.millis,
            info.load.tail_replayed,
            t.elapsed().as_secs_f64() * 1e3
        )
        .to_lowercase(),
    )?;

    // A few queries with their neighbours.
    let show = SearchOptions::new(5).include(Include {
        text: true,
        ..Include::default()
    });
    for (q, text) in query_vectors.chunks_exact(DIM).zip(&query_texts).take(3) {
        out.line("")?;
        out.line(&format!("query: {text:?}"))?;
        for (i, h) in coll.search(q, &show)?.hits.iter().enumerate() {
            let t: String = h.text.as_deref().unwrap_or("").chars().take(70).collect();
            out.line(&format!(
                "  {:>2}. {:.4}  {:<28} {t}",
                i + 1,
                h.distance.unwrap_or_default(),
                h.id
            ))?;
        }
    }

    // Recall of the HNSW index against exact search, with latencies.
    out.line("")?;
    let n = query_vectors.len() / DIM;
    let exact = SearchOptions::new(10).exact(true);
    let (mut truth, mut exact_us) = (Vec::new(), Vec::new());
    for q in query_vectors.chunks_exact(DIM) {
        let t = Instant::now();
        truth.push(coll.search(q, &exact)?.hits);
        exact_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.line(&format!(
        "exact    p50 {:>7.1} µs   (brute force, the ground truth)",
        median(&mut exact_us)
    ))?;
    for ef in [16, 64, 128, quiver::DEFAULT_EXPANSION_SEARCH] {
        let opts = SearchOptions::new(10).ef(ef);
        let (mut hit, mut us) = (0usize, Vec::new());
        for (q, want) in query_vectors.chunks_exact(DIM).zip(&truth) {
            let t = Instant::now();
            let got = coll.search(q, &opts)?.hits;
            us.push(t.elapsed().as_secs_f64() * 1e6);
            hit += got
                .iter()
                .filter(|h| want.iter().any(|w| w.id == h.id))
                .count();
        }
        out.line(&format!(
            "hnsw     p50 {:>7.1} µs   ef {:>3}   recall@10 {:.3} over {n} queries{}",
            median(&mut us),
            ef,
            hit as f64 / (10 * n) as f64,
            if ef == quiver::DEFAULT_EXPANSION_SEARCH {
                "   (the default)"
            } else {
                ""
            }
        ))?;
    }
    let report = coll.verify()?;
    out.line(&format!(
        "verify   {}: {} records, {} vectors compared, {} checked reachable",
        if report.ok() { "ok" } else { "DAMAGED" },
        report.records,
        report.vectors_checked,
        report.reachability_checked
    ))?;
    store.close()?;
    if !report.ok() {
        return Err(Failure::Internal(report.problems.join("; ")));
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
