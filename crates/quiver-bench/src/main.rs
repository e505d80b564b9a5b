//! `quiver-bench`: raw usearch, Quiver's library and Quiver's CLI side by
//! side, in one process run, on the same data and index settings. Recall is
//! printed next to every latency.
//!
//! ```text
//! quiver-bench --data DIR                 # pypi-minilm-20k format
//! quiver-bench --synthetic 1000000 --dim 384 [--queries 1000]
//! quiver-bench --quick                    # seconds; CI runs it so the harness never rots
//! ```
//! Options: `--efs 16,32,64,128,256`, `--scalar f32|bf16|f16|i8`,
//! `--threads N` (default: every core), `--json FILE`, `--markdown FILE`,
//! `--plot FILE.svg`, `--quiver PATH` (the CLI binary; default: beside this
//! one), `--ingest-only` (stop after the ingest line: for profiling ingest),
//! `--ingest-runs N` (usearch build and Quiver ingest run in turn N times;
//! default 5 up to 50k vectors, 3 up to 200k, else 1).
//!
//! Library latencies are measured interleaved, query by query, with raw
//! usearch's, so a noisy machine slows both alike and the ratio holds. The
//! CLI's are paired the same way with the library's: a `quiver search
//! --queries -` process is fed one query at a time through a pipe.

#![allow(clippy::unwrap_used)] // A benchmark that meets bad data should stop loudly.

mod plot;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use quiver::{CollectionConfig, Record, Scalar, SearchOptions, Store};
use serde_json::{json, Value};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

const K: usize = 10;
/// Filters run: `bucket < L` for each L (1% and 10% of uniform buckets 0..100).
const FILTERS: [u32; 2] = [1, 10];

struct Data {
    dim: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    /// Per query, the row numbers of the true top K.
    truth: Vec<Vec<usize>>,
    /// Per row, its `bucket` (0..100), when the data has one.
    buckets: Option<Vec<u32>>,
    /// Per filter in [`FILTERS`]: per query, the true top K among matches.
    filtered: Vec<Vec<Vec<usize>>>,
    name: String,
}

impl Data {
    fn n(&self) -> usize {
        self.base.len() / self.dim
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.base[i * self.dim..(i + 1) * self.dim]
    }
    fn queries(&self) -> impl Iterator<Item = &[f32]> {
        self.queries.chunks_exact(self.dim)
    }
}

fn floats(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The rows of the K smallest distances, nearest first.
fn nearest(mut d: Vec<(f32, usize)>) -> Vec<usize> {
    let k = K.min(d.len());
    if k < d.len() {
        d.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
    }
    d.truncate(k);
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    // From a slice: collecting `d.into_iter()` would reuse (and keep) its
    // whole allocation, 16 MB a query at 1M rows.
    d.iter().map(|t| t.1).collect()
}

/// Exact top K of every query among the rows `keep` accepts, on every core.
fn brute_force(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Vec<usize>> {
    let nq = queries.len() / dim;
    let next = AtomicUsize::new(0);
    let mut out = vec![Vec::new(); nq];
    let parts: Vec<Vec<(usize, Vec<usize>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cores())
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let qi = next.fetch_add(1, Ordering::Relaxed);
                        if qi >= nq {
                            return mine;
                        }
                        let q = &queries[qi * dim..(qi + 1) * dim];
                        let d = base
                            .chunks_exact(dim)
                            .enumerate()
                            .filter(|(i, _)| keep(*i))
                            .map(|(i, v)| (quiver::distance(quiver::Metric::Cos, q, v), i))
                            .collect();
                        mine.push((qi, nearest(d)));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (qi, top) in parts.into_iter().flatten() {
        out[qi] = top;
    }
    out
}

/// A dataset folder: base.f32, base.jsonl (ids, `metadata.bucket`),
/// queries.f32, queries.gt.jsonl and, if present, the filtered truth files.
fn load(dir: &Path, max_queries: Option<usize>) -> Data {
    let base = floats(&dir.join("base.f32"));
    let mut queries = floats(&dir.join("queries.f32"));
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("base.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row: HashMap<String, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l["id"].as_str().unwrap().to_string(), i))
        .collect();
    let buckets: Option<Vec<u32>> = lines
        .iter()
        .map(|l| l["metadata"]["bucket"].as_u64().map(|b| b as u32))
        .collect();
    let dim = base.len() / lines.len();
    let read_truth = |file: &str| -> Option<Vec<Vec<usize>>> {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        Some(
            text.lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    let n = v["neighbors"].as_array().unwrap();
                    n[..K.min(n.len())]
                        .iter()
                        .map(|n| row[n.as_str().unwrap()])
                        .collect()
                })
                .collect(),
        )
    };
    let mut truth = read_truth("queries.gt.jsonl")
        .unwrap_or_else(|| brute_force(&base, &queries, dim, &|_| true));
    if let Some(m) = max_queries {
        truth.truncate(m);
        queries.truncate(m * dim);
    }
    let nq = truth.len();
    let filtered = match &buckets {
        Some(b) => FILTERS
            .iter()
            .map(|&lim| {
                let mut t = read_truth(&format!("queries.gt.bucket-lt-{lim}.jsonl"))
                    .unwrap_or_else(|| brute_force(&base, &queries, dim, &|i| b[i] < lim));
                t.truncate(nq);
                t
            })
            .collect(),
        None => Vec::new(),
    };
    Data {
        dim,
        base,
        queries,
        truth,
        buckets,
        filtered,
        name: dir
            .file_name()
            .map_or("data".into(), |n| n.to_string_lossy().to_string()),
    }
}

/// Unit vectors shaped like sentence embeddings: clusters whose points lie
/// near a low-dimensional subspace (text embeddings have a low intrinsic
/// dimension; isotropic noise in 384-d would make every neighbour list
/// nearly random, unlike any real data): 1,000 points a cluster, each the
/// cluster's centre plus a random mix of 32 directions plus noise.
/// Calibrated so that at 20k points HNSW recall by ef is close to
/// pypi-minilm-20k's. Uniform buckets; exact truth by brute force.
fn synthetic(n: usize, dim: usize, nq: usize) -> Data {
    // Calibration knobs (QB_LATENT, QB_SPREAD, QB_NOISE); the defaults give
    // recall@10 0.80/0.93/0.99/0.999 at ef 16/32/64/128 on 20k points,
    // pypi-minilm-20k 0.87/0.94/0.98/0.993.
    let latent: usize = env_or("QB_LATENT", 32);
    let spread: f32 = env_or("QB_SPREAD", 0.3);
    let noise: f32 = env_or("QB_NOISE", 0.25);
    let clusters = (n / 1000).clamp(16, 1000);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let unit = |v: Vec<f32>| -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.into_iter().map(|x| x / norm).collect()
    };
    let direction = |rnd: &mut dyn FnMut() -> f32| unit((0..dim).map(|_| rnd()).collect());
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| direction(&mut rnd)).collect();
    let bases: Vec<Vec<Vec<f32>>> = (0..clusters)
        .map(|_| (0..latent).map(|_| direction(&mut rnd)).collect())
        .collect();
    let mut point = |c: usize| -> Vec<f32> {
        let mut v = centres[c].clone();
        for b in &bases[c] {
            let z = 2.0 * spread * rnd();
            for (x, y) in v.iter_mut().zip(b) {
                *x += z * y;
            }
        }
        for x in v.iter_mut() {
            *x += noise * rnd();
        }
        unit(v)
    };
    let mut base = Vec::with_capacity(n * dim);
    for i in 0..n {
        base.extend(point((i * 31 + i / 7) % clusters));
    }
    let mut queries = Vec::with_capacity(nq * dim);
    for i in 0..nq {
        queries.extend(point((i * 7 + 3) % clusters));
    }
    // A bucket independent of the cluster: a hash of the row number.
    let buckets: Vec<u32> = (0..n as u64)
        .map(|i| {
            let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % 100) as u32
        })
        .collect();
    eprintln!("computing exact ground truth for {nq} queries over {n} vectors...");
    let truth = brute_force(&base, &queries, dim, &|_| true);
    let filtered = FILTERS
        .iter()
        .map(|&lim| brute_force(&base, &queries, dim, &|i| buckets[i] < lim))
        .collect();
    Data {
        dim,
        base,
        queries,
        truth,
        buckets: Some(buckets),
        filtered,
        name: format!("synthetic-{n}x{dim}"),
    }
}

/// A tuning knob from the environment (for calibrating the generator).
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn recall(got: &[usize], want: &[usize]) -> f64 {
    if want.is_empty() {
        return 1.0;
    }
    let want: HashSet<&usize> = want.iter().collect();
    got.iter().filter(|g| want.contains(g)).count() as f64 / want.len() as f64
}

/// Latency and quality of one system over the query set.
#[derive(Default, Clone, Copy)]
struct Stats {
    recall: f64,
    p50: f64,
    p99: f64,
    mean: f64,
    short: usize,
}

struct Timer {
    us: Vec<f64>,
    recall: f64,
    short: usize,
}

impl Timer {
    fn new() -> Self {
        Timer {
            us: Vec::new(),
            recall: 0.0,
            short: 0,
        }
    }
    fn time(&mut self, want: &[usize], search: impl FnOnce() -> Vec<usize>) {
        let t = Instant::now();
        let got = search();
        self.us.push(t.elapsed().as_secs_f64() * 1e6);
        self.recall += recall(&got, want);
        self.short += usize::from(got.len() < want.len());
    }
    fn stats(mut self) -> Stats {
        let n = self.us.len().max(1) as f64;
        self.us.sort_by(|a, b| a.total_cmp(b));
        Stats {
            recall: self.recall / n,
            p50: pct(&self.us, 0.5),
            p99: pct(&self.us, 0.99),
            mean: self.us.iter().sum::<f64>() / n,
            short: self.short,
        }
    }
}

/// One system's search: a query in, row numbers out.
type Search<'a> = &'a mut dyn FnMut(&[f32]) -> Vec<usize>;

/// Run every query through each system in turn, query by query, so that
/// machine noise hits all of them alike.
fn interleaved(data: &Data, truth: &[Vec<usize>], systems: &mut [Search<'_>]) -> Vec<Stats> {
    let mut timers: Vec<Timer> = systems.iter().map(|_| Timer::new()).collect();
    for (q, want) in data.queries().zip(truth) {
        for (sys, timer) in systems.iter_mut().zip(&mut timers) {
            timer.time(want, || sys(q));
        }
    }
    timers.into_iter().map(Timer::stats).collect()
}

/// Queries per second with `threads` threads, each query run twice.
fn throughput(data: &Data, threads: usize, search: &(dyn Fn(&[f32]) -> usize + Sync)) -> f64 {
    let nq = data.truth.len();
    let total = 2 * nq;
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let q = &data.queries[(i % nq) * data.dim..(i % nq + 1) * data.dim];
                std::hint::black_box(search(q));
            });
        }
    });
    total as f64 / t.elapsed().as_secs_f64()
}

/// A field of `/proc/self/status` in MiB (VmRSS, VmHWM).
fn status_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Run a child to completion: its stdout and its peak RSS in MiB.
///
/// Linux carries a process's peak RSS across `exec`, so a child forked
/// from this large process would report this process's peak. The child is
/// therefore started by a small copy of this binary (`--child-rss`), which
/// reports the grandchild's own peak.
fn run_child(cmd: &mut Command) -> (String, f64) {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = Command::new(std::env::current_exe().unwrap());
    wrapped
        .arg("--child-rss")
        .arg(rss_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    let (out, _) = wait_child(&mut wrapped);
    let kib: f64 = std::fs::read_to_string(rss_file.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (out, kib / 1024.0)
}

/// `--child-rss FILE PROGRAM ARGS...`: run PROGRAM (stdout passed
/// through) and write its peak RSS in KiB to FILE.
fn child_rss(args: &[String]) {
    let mut child = Command::new(&args[1])
        .args(&args[2..])
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let (kib, ok) = wait4(&mut child);
    assert!(ok, "{} failed", args[1]);
    std::fs::write(&args[0], kib.to_string()).unwrap();
}

/// Reap `child`: (peak RSS in KiB, exited with 0).
fn wait4(child: &mut std::process::Child) -> (i64, bool) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unreaped child; both pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    (
        usage.ru_maxrss,
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    )
}

/// Run a child to completion: its stdout and (inflated, see
/// [`run_child`]) peak RSS in MiB.
/// A `quiver search --queries -` process (under `--child-rss`, for its
/// peak RSS), fed one query at a time through a pipe.
struct CliSession {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    rss_file: tempfile::NamedTempFile,
}

impl CliSession {
    fn start(cmd: &Command) -> Self {
        let rss_file = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--child-rss")
            .arg(rss_file.path())
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        CliSession {
            stdin: child.stdin.take().unwrap(),
            stdout: std::io::BufReader::new(child.stdout.take().unwrap()),
            child,
            rss_file,
        }
    }

    /// Send one query; its answer line.
    fn ask(&mut self, q: &[f32]) -> Value {
        use std::io::{BufRead, Write};
        let row: Vec<u8> = q.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.stdin.write_all(&row).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Close its stdin and reap it: its peak RSS in MiB.
    fn end(self) -> f64 {
        let CliSession {
            mut child,
            stdin,
            rss_file,
            ..
        } = self;
        drop(stdin);
        let (_, ok) = wait4(&mut child);
        assert!(ok, "the CLI search process failed");
        let kib: f64 = std::fs::read_to_string(rss_file.path())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kib / 1024.0
    }
}

fn wait_child(cmd: &mut Command) -> (String, f64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let (kib, ok) = wait4(&mut child);
    assert!(ok, "{cmd:?} failed");
    (out, kib as f64 / 1024.0)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_bytes(&e.path())).sum())
        .unwrap_or(0)
}

fn scalar_kinds(name: &str) -> (ScalarKind, Scalar) {
    match name {
        "f32" => (ScalarKind::F32, Scalar::F32),
        "f16" => (ScalarKind::F16, Scalar::F16),
        "bf16" => (ScalarKind::BF16, Scalar::Bf16),
        "i8" => (ScalarKind::I8, Scalar::I8),
        other => {
            eprintln!("--scalar: f32, f16, bf16 or i8, not {other:?}");
            std::process::exit(2)
        }
    }
}

fn usearch_options(dim: usize, scalar: ScalarKind) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: scalar,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    }
}

/// `quiver-bench --child-usearch FILE QUERIES DIM SCALAR EF`: what a raw
/// usearch search process costs (its peak RSS is read by the parent).
fn child_usearch(args: &[String]) {
    let dim: usize = args[2].parse().unwrap();
    let index = Index::new(&usearch_options(dim, scalar_kinds(&args[3]).0)).unwrap();
    index.load(&args[0]).unwrap();
    index.change_expansion_search(args[4].parse().unwrap());
    let queries = floats(Path::new(&args[1]));
    let mut found = 0;
    for q in queries.chunks_exact(dim) {
        found += index.search(q, K).unwrap().keys.len();
    }
    println!("{found}");
}

/// The markdown report and the JSON results, built side by side.
struct Report {
    md: Vec<String>,
    json: Vec<Value>,
}

impl Report {
    fn line(&mut self, s: impl Into<String>) {
        let s = s.into();
        println!("{s}");
        self.md.push(s);
    }
    fn table(&mut self, head: &[&str]) {
        self.line("");
        self.line(format!("| {} |", head.join(" | ")));
        self.line(format!("|{}", "---|".repeat(head.len())));
    }
    fn memory(&mut self, phase: &str) {
        let (rss, peak) = (status_mib("VmRSS:"), status_mib("VmHWM:"));
        self.json
            .push(json!({"phase": "memory", "after": phase, "rss_mib": rss, "peak_mib": peak}));
        self.line(format!("| {phase} | {rss:.0} | {peak:.0} |"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child-usearch") => return child_usearch(&args[1..]),
        Some("--child-rss") => return child_rss(&args[1..]),
        _ => {}
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let efs: Vec<usize> = arg("--efs")
        .unwrap_or_else(|| if quick { "16,64" } else { "16,32,64,128,256" }.into())
        .split(',')
        .map(|e| e.parse().unwrap())
        .collect();
    let scalar_name = arg("--scalar").unwrap_or_else(|| "f32".into());
    let (raw_scalar, quiver_scalar) = scalar_kinds(&scalar_name);
    let threads: usize = arg("--threads").map_or_else(cores, |t| t.parse().unwrap());
    let max_queries = arg("--queries").map(|q| q.parse().unwrap());
    let started = Instant::now();
    let data = if let Some(dir) = arg("--data") {
        load(Path::new(&dir), max_queries)
    } else if let Some(n) = arg("--synthetic") {
        let dim = arg("--dim").map_or(384, |d| d.parse().unwrap());
        synthetic(n.parse().unwrap(), dim, max_queries.unwrap_or(1000))
    } else if quick {
        synthetic(3000, 32, 100)
    } else {
        eprintln!(
            "usage: quiver-bench (--data DIR | --synthetic N [--dim D] | --quick) [--queries Q] \
             [--efs 16,64] [--scalar f32] [--threads N] [--json FILE] [--markdown FILE] \
             [--plot FILE.svg] [--quiver PATH] [--ingest-only] [--ingest-runs N]"
        );
        std::process::exit(2);
    };
    let (n, dim, nq) = (data.n(), data.dim, data.truth.len());
    let bin = arg("--quiver")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("quiver"));
    let have_cli = bin.is_file();
    let mut rep = Report {
        md: Vec::new(),
        json: Vec::new(),
    };
    rep.line(format!(
        "dataset {} ({n} × {dim}, cos, {scalar_name}, M 16, ef_construction 128), {nq} queries, k {K}; \
         {threads} threads where parallel; usearch {} ({})",
        data.name,
        usearch::version(),
        usearch::hardware_acceleration_available()
    ));
    rep.line("");
    rep.line("Memory, this process (MiB):");
    rep.table(&["after", "RSS", "peak RSS since the previous row"]);
    rep.memory("loading the data");
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");

    // 1. Raw usearch: a parallel build of the same options.
    let build_raw = || -> (Index, f64) {
        let index = Index::new(&usearch_options(dim, raw_scalar)).unwrap();
        index
            .reserve_capacity_and_threads(n, threads.max(2) * 2)
            .unwrap();
        let t = Instant::now();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(256, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    for j in i..(i + 256).min(n) {
                        index.add(j as u64, data.row(j)).unwrap();
                    }
                });
            }
        });
        let took = t.elapsed().as_secs_f64();
        (index, took)
    };
    // 2. Quiver: durable ingest in batches of 1,000 (each its own fsynced
    //    transaction, with a field index on `bucket`, through a bulk load),
    //    then a snapshot.
    let config = CollectionConfig {
        scalar: quiver_scalar,
        ..CollectionConfig::new(dim)
    };
    let record = |i: usize| {
        let r = Record::new(i.to_string(), data.row(i).to_vec());
        match &data.buckets {
            Some(b) => r.with_metadata(json!({ "bucket": b[i] })),
            None => r,
        }
    };
    let ingest_into = |dir: &Path| -> (Store, quiver::Collection, f64, f64) {
        let store = Store::open(dir).unwrap();
        let coll = store.create_collection("bench", &config).unwrap();
        if data.buckets.is_some() {
            coll.index_field("bucket").unwrap();
        }
        let t = Instant::now();
        // `Collection::bulk`: each batch is committed (fsynced) before
        // `upsert` returns, and goes into the index while the next one is
        // written; `finish` returns once the last is in the index.
        let mut bulk = coll.bulk().unwrap();
        for start in (0..n).step_by(1000) {
            let batch: Vec<Record> = (start..(start + 1000).min(n)).map(record).collect();
            bulk.upsert(&batch).unwrap();
        }
        bulk.finish().unwrap();
        let commit = t.elapsed().as_secs_f64();
        coll.flush().unwrap();
        let total = t.elapsed().as_secs_f64();
        (store, coll, commit, total)
    };
    // The two cannot run interleaved like searches, so on small sets they
    // run in turn several times (the last pair is kept for what follows)
    // and the median ratio is reported beside every pair's.
    let runs: usize = arg("--ingest-runs").map_or(
        match n {
            0..=50_000 => 5,
            50_001..=200_000 => 3,
            _ => 1,
        },
        |r| r.parse::<usize>().unwrap().max(1),
    );
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    for r in 1..runs {
        let (spare, build) = build_raw();
        drop(spare);
        let dir = work.path().join(format!("store-{r}"));
        let (st, c, commit, _) = ingest_into(&dir);
        drop(c);
        drop(st);
        std::fs::remove_dir_all(&dir).unwrap();
        pairs.push((build, commit));
    }
    reset_peak();
    let (index, raw_build) = build_raw();
    rep.memory("usearch build");
    // Saved and synced, as Quiver's snapshot is: the other half of a fair
    // comparison with Quiver's ingest plus its final snapshot.
    let raw_file = work.path().join("raw.usearch");
    let t = Instant::now();
    index.save(raw_file.to_str().unwrap()).unwrap();
    std::fs::File::open(&raw_file).unwrap().sync_all().unwrap();
    let raw_save = t.elapsed().as_secs_f64();
    reset_peak();
    let (store, coll, ingest_commit, ingest) = ingest_into(&store_dir);
    rep.memory("Quiver ingest (usearch index still held)");
    pairs.push((raw_build, ingest_commit));
    let mut ratios: Vec<f64> = pairs.iter().map(|(b, c)| b / c).collect();
    let each = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];

    rep.line("");
    rep.line(format!(
        "Ingest ({n} vectors): usearch parallel build {:.0} vectors/s ({raw_build:.2} s); \
         Quiver durable ingest (each batch committed and in the index) {:.0} records/s \
         ({ingest_commit:.2} s): {:.2}× usearch. With the final snapshot ({:.2} s) against \
         usearch's build plus a synced save ({raw_save:.2} s): {:.2}×. \
         Ratio over {runs} pairs run in turn: {each}; median **{median:.2}×**.",
        n as f64 / raw_build,
        n as f64 / ingest_commit,
        raw_build / ingest_commit,
        ingest - ingest_commit,
        (raw_build + raw_save) / ingest
    ));
    rep.json.push(
        json!({"phase": "ingest", "n": n, "usearch_build_s": raw_build,
        "usearch_vectors_per_s": n as f64 / raw_build, "usearch_save_s": raw_save,
        "quiver_ingest_s": ingest_commit, "quiver_records_per_s": n as f64 / ingest_commit,
        "quiver_final_snapshot_s": ingest - ingest_commit,
        "ratio": raw_build / ingest_commit,
        "ratio_with_save": (raw_build + raw_save) / ingest,
        "pairs": pairs, "median_ratio": median}),
    );
    if args.iter().any(|a| a == "--ingest-only") {
        return;
    }

    // Reachability after the parallel builds, every node: usearch by one
    // search whose ef is the whole graph (it never drops a candidate, so it
    // returns exactly what the entry point reaches); Quiver by `verify`,
    // which makes the same pass (and compares every vector with SQLite's).
    let t = Instant::now();
    index.change_expansion_search(n);
    let reached_raw = index.search(&vec![1.0f32; dim], n).unwrap().keys.len();
    let unreachable_raw = n - reached_raw;
    let raw_pass = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = coll.verify().unwrap();
    let verify_s = t.elapsed().as_secs_f64();
    rep.line(format!(
        "Reachability after the parallel build, all {n} nodes: usearch {unreachable_raw} unreachable \
         ({raw_pass:.1} s); Quiver {} unreachable (`verify`, {verify_s:.1} s, problems: {}).",
        report.unreachable,
        report.problems.len()
    ));
    rep.json.push(json!({"phase": "reachability", "checked": n,
        "usearch_unreachable": unreachable_raw, "quiver_unreachable": report.unreachable,
        "quiver_verify_ok": report.ok(), "quiver_verify_s": verify_s}));

    // 3. Search, one thread, interleaved query by query.
    let ids = |hits: &[quiver::Hit]| -> Vec<usize> {
        hits.iter().map(|h| h.id.parse().unwrap()).collect()
    };
    reset_peak();
    rep.line("");
    rep.line("Search, one query at a time on one thread, usearch and Quiver's library interleaved query by query:");
    rep.table(&[
        "ef",
        "usearch recall@10",
        "usearch p50 µs",
        "usearch p99 µs",
        "Quiver recall@10",
        "Quiver p50 µs",
        "Quiver p99 µs",
        "p50 ratio",
        "usearch QPS",
        "Quiver QPS",
        &format!("usearch QPS ({threads} threads)"),
        &format!("Quiver QPS ({threads} threads)"),
    ]);
    let mut curve = Vec::new();
    let mut lib_p50 = HashMap::new();
    for &ef in &efs {
        index.change_expansion_search(ef);
        let opts = SearchOptions::new(K).ef(ef);
        let mut raw = |q: &[f32]| -> Vec<usize> {
            index
                .search(q, K)
                .unwrap()
                .keys
                .iter()
                .map(|k| *k as usize)
                .collect()
        };
        let mut lib = |q: &[f32]| ids(&coll.search(q, &opts).unwrap().hits);
        let s = interleaved(&data, &data.truth, &mut [&mut raw, &mut lib]);
        let (u, l) = (s[0], s[1]);
        let raw_qps = throughput(&data, threads, &|q| index.search(q, K).unwrap().keys.len());
        let lib_qps = throughput(&data, threads, &|q| {
            coll.search(q, &opts).unwrap().hits.len()
        });
        lib_p50.insert(ef, l.p50);
        rep.line(format!(
            "| {ef} | {:.4} | {:.0} | {:.0} | {:.4} | {:.0} | {:.0} | **{:.2}** | {:.0} | {:.0} | {raw_qps:.0} | {lib_qps:.0} |",
            u.recall, u.p50, u.p99, l.recall, l.p50, l.p99, l.p50 / u.p50, 1e6 / u.mean, 1e6 / l.mean
        ));
        rep.json.push(json!({"phase": "search", "ef": ef,
            "usearch": {"recall": u.recall, "p50_us": u.p50, "p99_us": u.p99, "qps_1": 1e6 / u.mean, "qps_all": raw_qps, "short": u.short},
            "quiver_lib": {"recall": l.recall, "p50_us": l.p50, "p99_us": l.p99, "qps_1": 1e6 / l.mean, "qps_all": lib_qps, "short": l.short},
            "ratio_p50": l.p50 / u.p50}));
        curve.push((ef, u.recall, 1e6 / u.mean, l.recall, 1e6 / l.mean));
    }
    index.change_expansion_search(64);

    // 4. Filtered search: Quiver against an exact scan over just the
    //    matching rows and against usearch's predicate search.
    if let Some(buckets) = &data.buckets {
        rep.line("");
        rep.line("Filtered search (`bucket < L`), one thread, interleaved; \"scan\" is an exact scan over a prebuilt array of just the matching vectors:");
        rep.table(&[
            "filter",
            "matches",
            "Quiver plan",
            "Quiver recall@10",
            "Quiver short",
            "Quiver p50 µs",
            "Quiver first query µs (finds the matches)",
            "scan p50 µs",
            "ratio to scan",
            "usearch predicate (same ef) recall@10",
            "usearch predicate p50 µs",
        ]);
        for (fi, &lim) in FILTERS.iter().enumerate() {
            let rows: Vec<usize> = (0..n).filter(|&i| buckets[i] < lim).collect();
            let matrix: Vec<f32> = rows.iter().flat_map(|&i| data.row(i).to_vec()).collect();
            let text = format!("bucket < {lim}");
            let opts = SearchOptions::new(K).filter(text.parse().unwrap());
            // The first query finds the matches (and, for the exact plan,
            // reads their vectors); later ones reuse them until a write.
            let t = Instant::now();
            let plan = coll.search(&data.queries[..dim], &opts).unwrap().plan;
            let first_us = t.elapsed().as_secs_f64() * 1e6;
            // usearch's predicate search at the ef Quiver's plan chose
            // (the default when its plan was exact).
            index.change_expansion_search(plan.ef().unwrap_or(config.expansion_search));
            let plan = match plan.ef() {
                Some(ef) => format!("{}, ef {ef}", plan.name()),
                None => plan.name().to_string(),
            };
            let mut lib = |q: &[f32]| ids(&coll.search(q, &opts).unwrap().hits);
            let mut scan = |q: &[f32]| -> Vec<usize> {
                nearest(
                    matrix
                        .chunks_exact(dim)
                        .zip(&rows)
                        .map(|(v, &i)| (quiver::distance(quiver::Metric::Cos, q, v), i))
                        .collect(),
                )
            };
            let mut raw = |q: &[f32]| -> Vec<usize> {
                index
                    .filtered_search(q, K, |key| buckets[key as usize] < lim)
                    .unwrap()
                    .keys
                    .iter()
                    .map(|k| *k as usize)
                    .collect()
            };
            let s = interleaved(
                &data,
                &data.filtered[fi],
                &mut [&mut lib, &mut scan, &mut raw],
            );
            let (l, sc, u) = (s[0], s[1], s[2]);
            rep.line(format!(
                "| {text} | {} | {plan} | {:.4} | {} | {:.0} | {first_us:.0} | {:.0} | **{:.2}** | {:.4} | {:.0} |",
                rows.len(),
                l.recall,
                l.short,
                l.p50,
                sc.p50,
                l.p50 / sc.p50,
                u.recall,
                u.p50
            ));
            rep.json.push(json!({"phase": "filtered", "filter": text, "matches": rows.len(), "plan": plan,
                "quiver_lib": {"recall": l.recall, "short": l.short, "p50_us": l.p50, "p99_us": l.p99, "first_us": first_us},
                "scan": {"recall": sc.recall, "p50_us": sc.p50},
                "usearch_predicate": {"recall": u.recall, "p50_us": u.p50, "short": u.short},
                "ratio_to_scan": l.p50 / sc.p50}));
        }
    }
    rep.line("");
    rep.line("Memory, this process (MiB):");
    rep.table(&["after", "RSS", "peak RSS since the previous row"]);
    rep.memory("searches (both indexes held)");

    // 5. The CLI, end to end: a `quiver search --queries - --timings`
    //    process fed one query at a time, each answer's own time
    //    (`took_us`) paired with the library's time on the same query
    //    right beside it; and each search process's peak RSS next to a
    //    raw usearch process that loads its own saved index.
    let raw_memory = index.memory_usage();
    drop(index);
    let qfile = work.path().join("queries.f32");
    let qbytes: Vec<u8> = data.queries.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&qfile, &qbytes).unwrap();
    if have_cli {
        rep.line("");
        rep.line("The CLI (`quiver search --queries - --timings`, a fresh process fed the queries through a pipe one at a time; its own per-query `took_us`). The first pass is the fresh process's warm-up; in the second, each query goes to the CLI and to the library in turn (alternating which goes first), so both see the same moment of the machine. Peak RSS of each search process:");
        rep.table(&[
            "ef",
            "CLI recall@10",
            "CLI first pass p50 µs",
            "CLI p50 µs",
            "CLI p99 µs",
            "library p50 µs (same pass)",
            "CLI / library",
            "CLI process peak MiB",
            "usearch process peak MiB",
            "RSS ratio",
        ]);
        for &ef in &efs {
            let opts = SearchOptions::new(K).ef(ef);
            let mut cli = CliSession::start(
                Command::new(&bin)
                    .arg("--store")
                    .arg(&store_dir)
                    .args(["search", "bench", "--queries", "-"])
                    .args(["-k", &K.to_string(), "--ef", &ef.to_string(), "--timings"]),
            );
            let took = |line: &Value| line["took_us"].as_f64().unwrap();
            let mut first: Vec<f64> = data.queries().map(|q| took(&cli.ask(q))).collect();
            first.sort_by(|a, b| a.total_cmp(b));
            let first_p50 = pct(&first, 0.5);
            let (mut c, mut l) = (Timer::new(), Timer::new());
            for (i, (q, want)) in data.queries().zip(&data.truth).enumerate() {
                let mut ask_cli = || {
                    let line = cli.ask(q);
                    let got: Vec<usize> = line["hits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| h["id"].as_str().unwrap().parse().unwrap())
                        .collect();
                    c.recall += recall(&got, want);
                    c.short += usize::from(got.len() < want.len());
                    c.us.push(took(&line));
                };
                if i % 2 == 0 {
                    ask_cli();
                    l.time(want, || ids(&coll.search(q, &opts).unwrap().hits));
                } else {
                    l.time(want, || ids(&coll.search(q, &opts).unwrap().hits));
                    ask_cli();
                }
            }
            let cli_rss = cli.end();
            let (c, lib) = (c.stats(), l.stats().p50);
            let (_, raw_rss) = run_child(
                Command::new(std::env::current_exe().unwrap())
                    .arg("--child-usearch")
                    .arg(&raw_file)
                    .arg(&qfile)
                    .args([&dim.to_string(), &scalar_name, &ef.to_string()]),
            );
            rep.line(format!(
                "| {ef} | {:.4} | {first_p50:.0} | {:.0} | {:.0} | {lib:.0} | **{:.2}** | {cli_rss:.0} | {raw_rss:.0} | **{:.2}** |",
                c.recall, c.p50, c.p99, c.p50 / lib, cli_rss / raw_rss
            ));
            rep.json.push(
                json!({"phase": "cli", "ef": ef, "recall": c.recall, "short": c.short,
                "p50_us": c.p50, "p99_us": c.p99, "first_pass_p50_us": first_p50, "library_p50_us": lib,
                "ratio_to_library": c.p50 / lib, "cli_peak_rss_mib": cli_rss,
                "usearch_process_peak_rss_mib": raw_rss, "rss_ratio": cli_rss / raw_rss}),
            );
        }
    } else {
        rep.line(format!(
            "(CLI skipped: no quiver binary at {}; build it or pass --quiver)",
            bin.display()
        ));
    }
    let quiver_memory = coll.info().unwrap().index.memory_bytes;
    drop(coll);
    store.close().unwrap();

    rep.line("");
    rep.line(format!(
        "Index memory ({scalar_name}): usearch {:.1} MiB ({:.0} bytes a vector); Quiver's index {:.1} MiB after the ingest.",
        raw_memory as f64 / 1048576.0,
        raw_memory as f64 / n as f64,
        quiver_memory as f64 / 1048576.0
    ));
    rep.json.push(
        json!({"phase": "index_memory", "scalar": scalar_name, "usearch_bytes": raw_memory,
        "quiver_bytes": quiver_memory, "bytes_per_vector": raw_memory as f64 / n as f64}),
    );
    rep.line(format!(
        "Bytes on disk: Quiver store {:.1} MiB (SQLite with full f32 vectors, plus the index snapshot {:.1} MiB); \
         raw usearch index file {:.1} MiB; the raw f32 vectors {:.1} MiB.",
        dir_bytes(&store_dir) as f64 / 1048576.0,
        dir_bytes(&store_dir.join("index")) as f64 / 1048576.0,
        dir_bytes(&raw_file) as f64 / 1048576.0,
        (n * dim * 4) as f64 / 1048576.0
    ));
    rep.json.push(json!({"phase": "disk", "store_bytes": dir_bytes(&store_dir),
        "snapshot_bytes": dir_bytes(&store_dir.join("index")), "usearch_file_bytes": dir_bytes(&raw_file),
        "raw_vector_bytes": n * dim * 4}));

    // 6. Open: a fresh process from nothing to its first answered query,
    //    after a clean close, after 1,000 changes left out of the snapshot
    //    (the state a kill leaves), and with no snapshot at all (a rebuild).
    if have_cli {
        let q = serde_json::to_string(&data.queries[..dim]).unwrap();
        let first_answer = || -> f64 {
            let t = Instant::now();
            run_child(Command::new(&bin).arg("--store").arg(&store_dir).args([
                "search",
                "bench",
                "--vector",
                &q,
                "-k",
                &K.to_string(),
            ]));
            t.elapsed().as_secs_f64() * 1e3
        };
        let best = |runs: usize| (0..runs).map(|_| first_answer()).fold(f64::MAX, f64::min);
        let clean = best(5);
        {
            let keep = quiver::StoreOptions {
                snapshot_every_changes: u64::MAX,
                snapshot_every_secs: u64::MAX,
                close_snapshot_min_changes: u64::MAX,
                ..quiver::StoreOptions::default()
            };
            let store = Store::open_with(&store_dir, keep).unwrap();
            let coll = store.get_collection("bench").unwrap();
            let rows: Vec<usize> = (0..1000.min(n)).collect();
            for chunk in rows.chunks(100) {
                let batch: Vec<Record> = chunk.iter().map(|&i| record(i)).collect();
                coll.upsert(&batch).unwrap();
            }
            // Dropped without a snapshot: on disk, what a kill leaves.
        }
        let tail = best(5);
        for e in std::fs::read_dir(store_dir.join("index")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        // A read-only open rebuilds in memory every time: each run is a
        // rebuild. Above 200k vectors that is the index build again
        // (minutes; see the ingest line), so it is not repeated.
        let rebuild = if n > 200_000 { f64::NAN } else { best(3) };
        rep.line("");
        let rebuilt = if rebuild.is_nan() {
            "not measured above 200k vectors (it is the index build again)".to_string()
        } else {
            format!("{rebuild:.0} ms")
        };
        rep.line(format!(
            "Open to first answer (a fresh `quiver search` process, best of 5): after a clean close **{clean:.1} ms**; \
             with 1,000 changes after the snapshot **{tail:.1} ms**; no snapshot (index rebuilt from SQLite): {rebuilt}."
        ));
        rep.json.push(json!({"phase": "open", "clean_ms": clean, "tail_1000_ms": tail, "rebuild_ms": rebuild}));
    }

    if let Some(path) = arg("--plot") {
        std::fs::write(&path, plot::svg(&data.name, &curve)).unwrap();
        rep.line(format!("plot: {path}"));
    }
    rep.line(format!(
        "(harness run took {:.0} s)",
        started.elapsed().as_secs_f64()
    ));
    if let Some(path) = arg("--markdown") {
        std::fs::write(&path, rep.md.join("\n") + "\n").unwrap();
    }
    if let Some(path) = arg("--json") {
        let out = json!({"dataset": data.name, "n": n, "dim": dim, "queries": nq, "k": K,
            "scalar": scalar_name, "threads": threads, "cores": cores(),
            "usearch": usearch::version(), "results": rep.json});
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    }
}
