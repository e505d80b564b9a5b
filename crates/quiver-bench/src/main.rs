//! `quiver-bench`: raw usearch, Quiver's library and Quiver's CLI side by
//! side, in one process run, on the same data and index settings. Recall is
//! printed next to every latency.
//!
//! ```text
//! quiver-bench --data DIR                 # base.f32, queries.f32, queries.gt.jsonl (pypi-minilm-20k format)
//! quiver-bench --synthetic 100000 --dim 384
//! quiver-bench --quick                    # seconds; CI runs it so the harness never rots
//! ```
//! Options: `--efs 16,32,64,128,256`, `--json FILE`, `--quiver PATH` (the CLI binary).

#![allow(clippy::unwrap_used)] // A benchmark that meets bad data should stop loudly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use quiver::{CollectionConfig, Record, SearchOptions, Store};
use serde_json::{json, Value};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

const K: usize = 10;

struct Data {
    dim: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    /// Per query, the ids (row numbers) of the true top K.
    truth: Vec<Vec<usize>>,
    name: String,
}

fn floats(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn load(dir: &Path) -> Data {
    let base = floats(&dir.join("base.f32"));
    let queries = floats(&dir.join("queries.f32"));
    let ids: Vec<String> = std::fs::read_to_string(dir.join("base.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let row: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let truth: Vec<Vec<usize>> = std::fs::read_to_string(dir.join("queries.gt.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["neighbors"].as_array().unwrap()[..K]
                .iter()
                .map(|n| row[n.as_str().unwrap()])
                .collect()
        })
        .collect();
    let dim = base.len() / ids.len();
    Data {
        dim,
        base,
        queries,
        truth,
        name: dir
            .file_name()
            .map_or("data".into(), |n| n.to_string_lossy().to_string()),
    }
}

/// Clustered unit vectors; exact ground truth by brute force over `nq` queries.
fn synthetic(n: usize, dim: usize, nq: usize) -> Data {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..64).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
    let mut point = |c: &[f32]| -> Vec<f32> {
        let v: Vec<f32> = c.iter().map(|x| x + 0.35 * rnd()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.into_iter().map(|x| x / norm).collect()
    };
    let mut base = Vec::with_capacity(n * dim);
    for i in 0..n {
        base.extend(point(&centres[i % centres.len()]));
    }
    let mut queries = Vec::with_capacity(nq * dim);
    for i in 0..nq {
        queries.extend(point(&centres[(i * 7) % centres.len()]));
    }
    let truth = queries
        .chunks_exact(dim)
        .map(|q| {
            let mut d: Vec<(f32, usize)> = base
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| (quiver::distance(quiver::Metric::Cos, q, v), i))
                .collect();
            d.select_nth_unstable_by(K, |a, b| a.0.total_cmp(&b.0));
            let mut top: Vec<(f32, usize)> = d[..K].to_vec();
            top.sort_by(|a, b| a.0.total_cmp(&b.0));
            top.into_iter().map(|t| t.1).collect()
        })
        .collect();
    Data {
        dim,
        base,
        queries,
        truth,
        name: format!("synthetic-{n}x{dim}"),
    }
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn recall(got: &[usize], want: &[usize]) -> f64 {
    let want: HashSet<&usize> = want.iter().collect();
    got.iter().filter(|g| want.contains(g)).count() as f64 / K as f64
}

/// (recall@K, p50 µs, p99 µs) of running `search` once per query.
fn measure(data: &Data, mut search: impl FnMut(&[f32]) -> Vec<usize>) -> (f64, f64, f64) {
    let (mut us, mut rec) = (Vec::new(), 0.0);
    for (q, want) in data.queries.chunks_exact(data.dim).zip(&data.truth) {
        let t = Instant::now();
        let got = search(q);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        rec += recall(&got, want);
    }
    us.sort_by(|a, b| a.total_cmp(b));
    (rec / data.truth.len() as f64, pct(&us, 0.5), pct(&us, 0.99))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let efs: Vec<usize> = arg("--efs")
        .unwrap_or_else(|| {
            if quick {
                "16,64".into()
            } else {
                "16,32,64,128,256".into()
            }
        })
        .split(',')
        .map(|e| e.parse().unwrap())
        .collect();
    let data = if let Some(dir) = arg("--data") {
        load(Path::new(&dir))
    } else if let Some(n) = arg("--synthetic") {
        let dim = arg("--dim").map_or(384, |d| d.parse().unwrap());
        synthetic(
            n.parse().unwrap(),
            dim,
            arg("--queries").map_or(1000, |q| q.parse().unwrap()),
        )
    } else if quick {
        synthetic(2000, 32, 50)
    } else {
        eprintln!("usage: quiver-bench (--data DIR | --synthetic N [--dim D] | --quick) [--efs 16,64] [--json FILE]");
        std::process::exit(2);
    };
    let n = data.base.len() / data.dim;
    let mut results = Vec::new();
    let mut table = vec![
        format!(
            "dataset {} ({n} × {}, cos, f32, M 16, ef_construction 128), {} queries, k {K}",
            data.name,
            data.dim,
            data.truth.len()
        ),
        String::new(),
        "| system | what | ef | recall@10 | p50 µs | p99 µs | ratio to usearch p50 |".into(),
        "|---|---|---|---|---|---|---|".into(),
    ];

    // 1. Raw usearch through its Rust crate.
    let options = IndexOptions {
        dimensions: data.dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    };
    let index = Index::new(&options).unwrap();
    index.reserve(n).unwrap();
    let t = Instant::now();
    for (i, v) in data.base.chunks_exact(data.dim).enumerate() {
        index.add(i as u64, v).unwrap();
    }
    let build = t.elapsed().as_secs_f64();
    results.push(json!({"system": "usearch", "phase": "build", "seconds": build, "vectors_per_sec": n as f64 / build}));
    let mut raw_p50 = std::collections::HashMap::new();
    for &ef in &efs {
        index.change_expansion_search(ef);
        let (r, p50, p99) = measure(&data, |q| {
            index
                .search(q, K)
                .unwrap()
                .keys
                .iter()
                .map(|k| *k as usize)
                .collect()
        });
        raw_p50.insert(ef, p50);
        table.push(format!(
            "| usearch | search | {ef} | {r:.4} | {p50:.0} | {p99:.0} | 1.00 |"
        ));
        results.push(json!({"system": "usearch", "phase": "search", "ef": ef, "recall": r, "p50_us": p50, "p99_us": p99}));
    }
    drop(index);

    // 2. Quiver's library: durable ingest in batches of 1,000, then search.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let coll = store
        .create_collection("bench", &CollectionConfig::new(data.dim))
        .unwrap();
    let t = Instant::now();
    let rows: Vec<&[f32]> = data.base.chunks_exact(data.dim).collect();
    for (b, chunk) in rows.chunks(1000).enumerate() {
        let batch: Vec<Record> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Record::new(format!("{}", b * 1000 + i), v.to_vec()))
            .collect();
        coll.upsert(&batch).unwrap();
    }
    coll.flush().unwrap();
    let ingest = t.elapsed().as_secs_f64();
    results.push(json!({"system": "quiver", "phase": "ingest", "seconds": ingest, "records_per_sec": n as f64 / ingest,
        "ratio_to_usearch_build": (n as f64 / ingest) / (n as f64 / build)}));
    for &ef in &efs {
        let opts = SearchOptions::new(K).ef(ef);
        let (r, p50, p99) = measure(&data, |q| {
            coll.search(q, &opts)
                .unwrap()
                .hits
                .iter()
                .map(|h| h.id.parse().unwrap())
                .collect()
        });
        let ratio = p50 / raw_p50[&ef];
        table.push(format!(
            "| quiver library | search | {ef} | {r:.4} | {p50:.0} | {p99:.0} | {ratio:.2} |"
        ));
        results.push(json!({"system": "quiver-lib", "phase": "search", "ef": ef, "recall": r, "p50_us": p50, "p99_us": p99, "ratio": ratio}));
    }
    drop(coll);
    store.close().unwrap();

    // 3. Quiver's CLI end to end, each query's own time (`--timings`).
    let bin = arg("--quiver")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("quiver"));
    if bin.is_file() {
        let qfile = dir.path().join("queries.f32");
        let raw: Vec<u8> = data.queries.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&qfile, raw).unwrap();
        for &ef in &efs {
            let out = Command::new(&bin)
                .arg("--store")
                .arg(dir.path().join("store"))
                .args(["search", "bench", "--queries"])
                .arg(&qfile)
                .args(["-k", &K.to_string(), "--ef", &ef.to_string(), "--timings"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<Value> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let mut us: Vec<f64> = lines
                .iter()
                .map(|l| l["took_us"].as_f64().unwrap())
                .collect();
            us.sort_by(|a, b| a.total_cmp(b));
            let r = lines
                .iter()
                .zip(&data.truth)
                .map(|(l, want)| {
                    let got: Vec<usize> = l["hits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| h["id"].as_str().unwrap().parse().unwrap())
                        .collect();
                    recall(&got, want)
                })
                .sum::<f64>()
                / lines.len() as f64;
            let (p50, p99) = (pct(&us, 0.5), pct(&us, 0.99));
            let ratio = p50 / raw_p50[&ef];
            table.push(format!("| quiver CLI | search --timings | {ef} | {r:.4} | {p50:.0} | {p99:.0} | {ratio:.2} |"));
            results.push(json!({"system": "quiver-cli", "phase": "search", "ef": ef, "recall": r, "p50_us": p50, "p99_us": p99, "ratio": ratio}));
        }
    } else {
        table.push(format!(
            "(CLI skipped: no quiver binary at {}; build it or pass --quiver)",
            bin.display()
        ));
    }

    // 4. Open: a fresh process from nothing to its first answered query,
    //    after a clean close, after 1,000 changes left out of the snapshot
    //    (as after a kill), and with no snapshot at all (a rebuild).
    if bin.is_file() {
        let store_dir = dir.path().join("store");
        let q = serde_json::to_string(&data.queries[..data.dim]).unwrap();
        let first_answer = || -> f64 {
            let t = Instant::now();
            let out = Command::new(&bin)
                .arg("--store")
                .arg(&store_dir)
                .args(["search", "bench", "--vector", &q, "-k", &K.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.elapsed().as_secs_f64() * 1e3
        };
        let best = |f: &dyn Fn() -> f64| (0..3).map(|_| f()).fold(f64::MAX, f64::min);
        let clean = best(&first_answer);
        {
            // 1,000 updates that never reach a snapshot, then no clean close.
            let keep = quiver::StoreOptions {
                snapshot_every_changes: u64::MAX,
                snapshot_every_secs: u64::MAX,
                close_snapshot_min_changes: u64::MAX,
                ..quiver::StoreOptions::default()
            };
            let store = Store::open_with(&store_dir, keep).unwrap();
            let coll = store.get_collection("bench").unwrap();
            for chunk in (0..1000.min(n)).collect::<Vec<_>>().chunks(100) {
                let batch: Vec<Record> = chunk
                    .iter()
                    .map(|i| Record::new(format!("{i}"), rows[*i].to_vec()))
                    .collect();
                coll.upsert(&batch).unwrap();
            }
        }
        let tail = best(&first_answer);
        for e in std::fs::read_dir(store_dir.join("index")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        // Read-only opens rebuild in memory every time: each run is a rebuild.
        let rebuild = best(&first_answer);
        table.push(format!(
            "open to first answer (fresh process, best of 3): clean {clean:.1} ms; with 1,000 changes after the snapshot {tail:.1} ms; no snapshot (rebuild) {rebuild:.1} ms"
        ));
        results.push(json!({"system": "quiver-cli", "phase": "open", "clean_ms": clean, "tail_1000_ms": tail, "rebuild_ms": rebuild}));
    }
    table.push(String::new());
    table.push(format!(
        "ingest: usearch build {:.0} vectors/s (single thread, in memory); Quiver durable ingest {:.0} records/s in batches of 1,000 ({:.2}× usearch)",
        n as f64 / build,
        n as f64 / ingest,
        build / ingest
    ));
    println!("{}", table.join("\n"));
    if let Some(path) = arg("--json") {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(
                &json!({"dataset": data.name, "n": n, "dim": data.dim, "results": results}),
            )
            .unwrap(),
        )
        .unwrap();
    }
}
