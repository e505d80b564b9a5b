//! Tests of the usearch wrapper.

use super::*;

/// An f32 cosine config: these tests compare stored vectors exactly.
fn config(dim: usize) -> CollectionConfig {
    let mut c = CollectionConfig::new(dim);
    c.scalar = Scalar::F32;
    c
}

/// Uniform in [-1, 1) from a xorshift of `state` (not 0).
fn uniform(mut state: u64) -> impl FnMut() -> f32 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

#[test]
fn grows_past_initial_capacity_and_round_trips() {
    let cfg = config(4);
    let mut h = HnswIndex::new(&cfg, 0).unwrap();
    let n = 3000u64;
    for key in 1..=n {
        if h.needs_growth(1) {
            h.grow(1).unwrap();
        }
        h.upsert(key, &[key as f32, 1.0, 0.5, (key % 7) as f32])
            .unwrap();
    }
    assert_eq!(h.len(), n as usize);
    assert!(h.capacity() >= n as usize);
    h.upsert(5, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(h.len(), n as usize);
    // The replaced vector stays in the graph, retired.
    assert_eq!(h.deleted(), 1);
    assert!(h.remove(6).unwrap());
    assert!(!h.remove(6).unwrap());
    assert_eq!(h.len(), n as usize - 1);
    // Retired nodes never come back from a search.
    let hits = h.search(&[6.0, 1.0, 0.5, 6.0], 20, Some(64)).unwrap();
    assert!(hits.iter().all(|(k, _)| *k < DEAD_BASE && *k != 6));
    assert_eq!(hits.len(), 20);
    let bytes = h.to_bytes(None).unwrap();
    // Reused memory, longer or shorter and full of other bytes, gives
    // the same bytes: usearch writes every byte it reports.
    for len in [bytes.len() + 100, bytes.len() - 100] {
        assert_eq!(h.to_bytes(Some(vec![0xAB; len])).unwrap(), bytes);
    }
    assert!(HnswIndex::load(&cfg, &bytes, h.len() + 1).is_err());
    let back = HnswIndex::load(&cfg, &bytes, h.len()).unwrap();
    assert_eq!(back.len(), h.len());
    assert_eq!(back.deleted(), 2);
    assert_eq!(back.slots(), n as usize + 1);
    assert!(!back.contains(6));
    back.remove(7).unwrap();
    assert_eq!(back.deleted(), 3);
    // A cosine graph holds unit vectors.
    assert_eq!(back.get(5).unwrap().unwrap(), unit(&[1.0, 2.0, 3.0, 4.0]));
    let mut other = cfg.clone();
    other.dimension = 5;
    assert!(HnswIndex::load(&other, &bytes, h.len()).is_err());
    let mut other = cfg.clone();
    other.connectivity = 8;
    assert!(HnswIndex::load(&other, &bytes, h.len()).is_err());
}

/// Many copies of few vectors, most of them retired: the state in
/// which inner product on unit vectors once came back short (288 of
/// 14,400 searches here returned nothing at any ef). Copies are at
/// exactly equal distances, and usearch's neighbour heuristic kept
/// them all, so a group of copies closed into a pocket of retired
/// nodes that no search left. Patch hunk 8 keeps a few per list.
#[test]
fn copies_of_few_vectors_do_not_close_a_pocket() {
    copies_of_few_vectors(Scalar::F32);
}

/// The same at bf16, the default storage, which stays cosine (see
/// [`unit_vectors`]): under inner product, 117 of the 700 live keys here
/// were left unreachable.
#[test]
fn copies_of_few_vectors_at_bf16_stay_reachable() {
    copies_of_few_vectors(Scalar::Bf16);
}

fn copies_of_few_vectors(scalar: Scalar) {
    let mut cfg = config(8);
    cfg.scalar = scalar;
    let mut h = HnswIndex::new(&cfg, 500).unwrap();
    h.grow(5000).unwrap();
    let v = |key: u64, step: u64, stride: u64, modulus: u64| -> Vec<f32> {
        (0..8)
            .map(|i| ((key * step + i * stride) % modulus) as f32 + 1.0)
            .collect()
    };
    for key in 0..500u64 {
        h.upsert(key + 1, &v(key, 31, 7, 97)).unwrap();
    }
    // 3,500 replacements of 700 keys with 89 distinct vectors.
    for key in 501..4000u64 {
        h.upsert(key % 700 + 1, &v(key, 17, 3, 89)).unwrap();
    }
    // Every live key stays reachable (retired copies need not be).
    let walk = h.walk();
    let lost: Vec<u64> = (1..=700).filter(|k| !walk.contains(k)).collect();
    assert!(lost.is_empty(), "live keys no walk reaches: {lost:?}");
    let mut short = 0;
    for t in 0..24u64 {
        for i in 0..200u64 {
            let q: Vec<f32> = (0..8)
                .map(|j| ((t * 13 + i + j) % 50) as f32 + 1.0)
                .collect();
            let ef = [16, 64, 200][(t + i) as usize % 3];
            let query = h.prepared(&q).into_owned();
            short += usize::from(h.search_once(&query, 10, ef).unwrap().len() < 10);
        }
    }
    assert_eq!(short, 0, "searches that came back short");
}

#[test]
fn per_query_ef_and_concurrent_searches() {
    let cfg = config(8);
    let mut h = HnswIndex::new(&cfg, 500).unwrap();
    h.grow(5000).unwrap();
    for key in 0..500u64 {
        let v: Vec<f32> = (0..8)
            .map(|i| ((key * 31 + i * 7) % 97) as f32 + 1.0)
            .collect();
        h.upsert(key + 1, &v).unwrap();
    }
    // More threads than slots: the semaphore must make them wait, not fail.
    // A writer adds and retires meanwhile: no search may come back short.
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (hr, doner) = (&h, &done);
        s.spawn(move || {
            for key in 501..4000u64 {
                let v: Vec<f32> = (0..8)
                    .map(|i| ((key * 17 + i * 3) % 89) as f32 + 1.0)
                    .collect();
                hr.upsert(key % 700 + 1, &v).unwrap();
            }
            doner.store(true, Ordering::Relaxed);
        });
        for t in 0..24 {
            let h = &h;
            s.spawn(move || {
                for i in 0..200 {
                    let q: Vec<f32> = (0..8)
                        .map(|j| ((t * 13 + i + j) % 50) as f32 + 1.0)
                        .collect();
                    let ef = [None, Some(16), Some(200)][(t + i) % 3];
                    let hits = h.search(&q, 10, ef).unwrap();
                    assert_eq!(hits.len(), 10);
                }
            });
        }
    });
}

/// Cycles of the state usearch 2.26.6 crashed in (USEARCH-NOTES,
/// "Concurrent add and search"): an empty index, threads spinning on
/// every read (search, filtered search, get, usearch's own exact scan),
/// and the first adds. Unpatched, a search that overlaps the first add
/// measures against a null vector (SIGSEGV) within a few thousand
/// cycles. `QUIVER_STRESS_CYCLES` runs it longer.
#[test]
fn reads_overlapping_the_first_adds_of_an_empty_index() {
    let cycles: usize = std::env::var("QUIVER_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let dim = 8;
    let adds = 48u64;
    let vector = |key: u64| -> Vec<f32> {
        (0..dim as u64)
            .map(|i| ((key * 37 + i * 11) % 23) as f32 + 1.0)
            .collect()
    };
    for cycle in 0..cycles {
        let h = HnswIndex::new(&config(dim), 0).unwrap();
        let (added, done) = (AtomicUsize::new(0), AtomicBool::new(false));
        let spinning = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let reader = |mode: usize| {
                let (h, added, done, spinning) = (&h, &added, &done, &spinning);
                move || {
                    spinning.fetch_add(1, Ordering::AcqRel);
                    let mut i = 0u64;
                    while !done.load(Ordering::Acquire) {
                        i += 1;
                        // Everything below `before` was added before this read began.
                        let before = added.load(Ordering::Acquire) as u64;
                        let q = vector(i % adds + 1);
                        let hits = match mode {
                            0 => h.search(&q, 4, None).unwrap(),
                            1 => h.filtered_search(&q, 4, 16, 4, |k| k % 2 == 1).unwrap(),
                            _ => {
                                let key = i % (before + 2) + 1;
                                let got = h.get(key).unwrap();
                                assert!(
                                    key > before || got == Some(unit(&vector(key))),
                                    "cycle {cycle}"
                                );
                                let _gate = h.enter_ef(h.default_ef);
                                let _permit = h.permits.acquire();
                                let m = h.index.exact_search(&q, 4).unwrap();
                                m.keys.into_iter().zip(m.distances).collect()
                            }
                        };
                        assert!(hits.len() <= 4, "cycle {cycle}");
                        for (key, d) in hits {
                            assert!(
                                (1..=adds).contains(&key) && d.is_finite(),
                                "cycle {cycle}: {key} {d}"
                            );
                        }
                    }
                }
            };
            let readers: Vec<_> = (0..3).map(|m| s.spawn(reader(m))).collect();
            while spinning.load(Ordering::Acquire) < readers.len() {
                std::hint::spin_loop();
            }
            for key in 1..=adds {
                h.upsert(key, &vector(key)).unwrap();
                added.store(key as usize, Ordering::Release);
            }
            done.store(true, Ordering::Release);
            for r in readers {
                r.join().unwrap();
            }
        });
        assert_eq!(h.len(), adds as usize);
    }
}

/// `reachable` (one search with ef = the graph's size) against an
/// independent walk of the links, on graphs built by parallel adds
/// without the write path's repair, which leave a few nodes unreachable.
#[test]
fn reachable_matches_a_walk_of_the_links() {
    let dim = 16;
    let n = 16_000u64;
    let mut seen_unreachable = false;
    for seed in 0..8u64 {
        let mut next = uniform(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let centres: Vec<Vec<f32>> = (0..8).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let vectors: Vec<Vec<f32>> = (0..n as usize)
            .map(|i| centres[i % 8].iter().map(|c| c + 0.3 * next()).collect())
            .collect();
        let mut h = HnswIndex::new(&config(dim), n as usize).unwrap();
        par_each(n as usize, 2, |j| h.upsert(j as u64 + 1, &vectors[j])).unwrap();
        let reached = h.reachable().unwrap();
        // The walk: from the nodes of the top level down the base level's links.
        let top = (1..=n).map(|k| h.index.level_of_key(k)).max().unwrap();
        let mut walked: HashSet<u64> = (1..=n)
            .filter(|&k| h.index.level_of_key(k) == top)
            .collect();
        let mut stack: Vec<u64> = walked.iter().copied().collect();
        while let Some(k) = stack.pop() {
            for m in h.index.neighbors(k, 0) {
                if walked.insert(m) {
                    stack.push(m);
                }
            }
        }
        assert_eq!(reached, walked, "seed {seed}");
        // The walk from where a search lands reaches the same nodes.
        let from_search: HashSet<u64> = h.walk().into_iter().collect();
        assert_eq!(from_search, reached, "seed {seed}");
        if reached.len() < n as usize {
            seen_unreachable = true;
            // Added again alone, the lost nodes are linked in.
            let lost: Vec<u64> = (1..=n).filter(|k| !reached.contains(k)).collect();
            h.grow(lost.len()).unwrap();
            for k in &lost {
                h.upsert(*k, &vectors[*k as usize - 1]).unwrap();
            }
            assert_eq!(h.reachable().unwrap().len(), n as usize, "seed {seed}");
            break;
        }
    }
    // Otherwise the comparison above proved nothing about misses.
    assert!(seen_unreachable, "no seed left a node unreachable");
}

/// A snapshot written before issue 21 measures f32 cosine by cosine: it
/// is read as it is (not rebuilt), takes new (normalised) vectors beside
/// its own raw ones, and reports 1 − cosine for both.
#[test]
fn an_old_cosine_snapshot_is_read_as_it_is() {
    let cfg = config(4);
    assert!(unit_vectors(&cfg));
    let mut old = options(&cfg);
    old.metric = MetricKind::Cos;
    let raw = Index::new(&old).unwrap();
    raw.reserve(16).unwrap();
    let vectors = [
        [3.0, 0.0, 0.0, 0.0],
        [0.0, 2.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
    ];
    for (i, v) in vectors.iter().enumerate() {
        raw.add(i as u64 + 1, v).unwrap();
    }
    let mut bytes = vec![0u8; raw.serialized_length()];
    raw.save_to_buffer(&mut bytes).unwrap();
    let mut h = HnswIndex::load(&cfg, &bytes, 3).unwrap();
    h.grow(1).unwrap();
    h.upsert(4, &[0.0, 0.0, 5.0, 0.0]).unwrap();
    let hits = h.search(&[2.0, 2.0, 0.0, 0.0], 4, None).unwrap();
    assert_eq!(hits[0].0, 3);
    assert!(hits[0].1.abs() < 1e-6);
    let d = |k: u64| hits.iter().find(|h| h.0 == k).unwrap().1;
    assert!((d(1) - (1.0 - 0.5f32.sqrt())).abs() < 1e-5);
    assert!((d(4) - 1.0).abs() < 1e-5, "the new vector, 1 - cos = 1");
    // Saved again, it stays a cosine graph: its header says so.
    let again = h.to_bytes(None).unwrap();
    let meta = Index::metadata_from_buffer(&again).unwrap();
    assert_eq!(meta.metric, MetricKind::Cos);
    assert!(HnswIndex::load(&cfg, &again, 4).is_ok());
}

/// Components whose squares overflow f32 (about 1e19 at 384-d) still
/// normalise.
#[test]
fn huge_and_tiny_vectors_normalise() {
    for scale in [1e30f32, 1e-30] {
        let v: Vec<f32> = (0..384).map(|i| scale * (i % 7) as f32).collect();
        let u = unit(&v);
        let norm: f64 = u.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "scale {scale}: norm {norm}");
    }
}

/// A bf16 cosine graph holds unit vectors and is built by cosine; its
/// searches walk by inner product and report cosine (patch hunk 9). A
/// query 10 times longer than unit, given to usearch as it is, shows
/// which: by inner product its distances would be 1 − 10·cos.
#[test]
fn bf16_cosine_walks_by_inner_product_and_reports_cosine() {
    let dim = 32;
    let mut cfg = config(dim);
    cfg.scalar = Scalar::Bf16;
    assert!(unit_vectors(&cfg) && search_by_inner_product(&cfg));
    assert_eq!(options(&cfg).metric, MetricKind::Cos);
    let mut next = uniform(0x2545_F491_4F6C_DD1D);
    // Norms from 0.01 to 100: inner product on the raw vectors would rank
    // the long ones first.
    let n = 2000;
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let scale = 10f32.powf(2.0 * next());
            (0..dim).map(|_| scale * next()).collect()
        })
        .collect();
    let h = HnswIndex::new(&cfg, n).unwrap();
    for (i, v) in vectors.iter().enumerate() {
        h.upsert(i as u64 + 1, v).unwrap();
    }
    let cos = |a: &[f32], b: &[f32]| {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (x, y) in a.iter().zip(b) {
            ab += f64::from(*x) * f64::from(*y);
            aa += f64::from(*x).powi(2);
            bb += f64::from(*y).powi(2);
        }
        (1.0 - ab / (aa.sqrt() * bb.sqrt())) as f32
    };
    let loaded = HnswIndex::load(&cfg, &h.to_bytes(None).unwrap(), n).unwrap();
    let (mut found, mut wanted) = (0, 0);
    for _ in 0..50 {
        let q: Vec<f32> = (0..dim).map(|_| next()).collect();
        let mut exact: Vec<(u64, f32)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, cos(&q, v)))
            .collect();
        exact.sort_by(|a, b| a.1.total_cmp(&b.1));
        let truth: HashSet<u64> = exact[..10].iter().map(|e| e.0).collect();
        for index in [&h, &loaded] {
            let long: Vec<f32> = unit(&q).iter().map(|x| 10.0 * x).collect();
            let raw = index.index.search(&long, 10).unwrap();
            assert_eq!(raw.keys.len(), 10);
            for (key, d) in raw.keys.iter().zip(&raw.distances) {
                let want = cos(&q, &vectors[*key as usize - 1]);
                assert!(
                    (d - want).abs() < 0.02,
                    "key {key}: {d} against 1 - cos {want}"
                );
            }
            assert!(raw.distances.windows(2).all(|w| w[0] <= w[1]));
            let hits = index.search(&q, 10, Some(200)).unwrap();
            found += hits.iter().filter(|(k, _)| truth.contains(k)).count();
            wanted += 10;
        }
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

/// The patched usearch measures f32 by its own kernels (patch hunk 10,
/// f32 sums in four chains): every length around the vector widths, and
/// the tails, agree with sums in f64; products beyond f32's range fall
/// back to NumKong's f64 kernel; zero vectors keep NumKong's cosine.
#[test]
fn f32_kernels_agree_with_f64_sums() {
    // The kernel is chosen once per process: the AVX2 one and NumKong's
    // are checked in a child process each.
    if std::env::var_os("QUIVER_F32_KERNELS").is_none() {
        for kernels in ["avx2", "numkong"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "index::hnsw::tests::f32_kernels_agree_with_f64_sums",
                ])
                .env("QUIVER_F32_KERNELS", kernels)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "QUIVER_F32_KERNELS={kernels}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut next = uniform(0x9E37_79B9_7F4A_7C15);
    let reference = |metric: MetricKind, a: &[f32], b: &[f32]| -> f64 {
        let (mut ab, mut aa, mut bb, mut l2) = (0f64, 0f64, 0f64, 0f64);
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            ab += x * y;
            aa += x * x;
            bb += y * y;
            l2 += (x - y) * (x - y);
        }
        match metric {
            MetricKind::IP => 1.0 - ab,
            MetricKind::L2sq => l2,
            _ if aa == 0.0 && bb == 0.0 => 0.0,
            _ if ab == 0.0 => 1.0,
            _ => (1.0 - ab / (aa.sqrt() * bb.sqrt())).max(0.0),
        }
    };
    let index_of = |metric: MetricKind, vectors: &[Vec<f32>]| {
        let index = Index::new(&IndexOptions {
            dimensions: vectors[0].len(),
            metric,
            quantization: ScalarKind::F32,
            ..IndexOptions::default()
        })
        .unwrap();
        index.reserve(vectors.len()).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            index.add(i as u64, v).unwrap();
        }
        index
    };
    let dims = [
        1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 384, 1536,
    ];
    for dim in dims {
        let vectors: Vec<Vec<f32>> = (0..8)
            .map(|i| (0..dim).map(|_| (i as f32 + 0.5) * next()).collect())
            .collect();
        let query: Vec<f32> = (0..dim).map(|_| next()).collect();
        for metric in [MetricKind::IP, MetricKind::L2sq, MetricKind::Cos] {
            let m = index_of(metric, &vectors).exact_search(&query, 8).unwrap();
            assert_eq!(m.keys.len(), 8);
            for (key, d) in m.keys.iter().zip(&m.distances) {
                let v = &vectors[*key as usize];
                let want = reference(metric, &query, v);
                let scale: f64 = 1.0
                    + query
                        .iter()
                        .zip(v)
                        .map(|(x, y)| f64::from(x * y).abs() + f64::from(y * y))
                        .sum::<f64>();
                assert!(
                    (f64::from(*d) - want).abs() <= 1e-5 * scale,
                    "{metric:?} dim {dim}: {d} against {want}"
                );
            }
        }
    }
    // bf16 inner product (what bf16 searches walk by): against f64 sums of
    // the inputs rounded to bf16 (to nearest, ties to even).
    let bf16 = |x: f32| {
        let bits = x.to_bits();
        f32::from_bits((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000)
    };
    for dim in dims {
        let vectors: Vec<Vec<f32>> = (0..8).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let query: Vec<f32> = (0..dim).map(|_| next()).collect();
        let index = Index::new(&IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: ScalarKind::BF16,
            ..IndexOptions::default()
        })
        .unwrap();
        index.reserve(8).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            index.add(i as u64, v).unwrap();
        }
        let m = index.exact_search(&query, 8).unwrap();
        let rounded = |v: &[f32]| v.iter().map(|x| bf16(*x)).collect::<Vec<f32>>();
        for (key, d) in m.keys.iter().zip(&m.distances) {
            let (q, v) = (rounded(&query), rounded(&vectors[*key as usize]));
            let want = reference(MetricKind::IP, &q, &v);
            let scale: f64 = 1.0
                + q.iter()
                    .zip(&v)
                    .map(|(x, y)| f64::from(x * y).abs())
                    .sum::<f64>();
            assert!(
                (f64::from(*d) - want).abs() <= 1e-5 * scale,
                "bf16 dim {dim}: {d} against {want}"
            );
        }
    }
    // 1e20² is past f32: in f32 the sum is inf − inf. NumKong's f64 gives 0.
    let big = index_of(MetricKind::IP, &[vec![1e20, -1e20]]);
    let m = big.exact_search(&[1e20f32, 1e20], 1).unwrap();
    assert_eq!(m.distances, [1.0]);
    // Cosine of vectors whose squared norms overflow, or underflow, f32.
    for scale in [1e25f32, 1e-25] {
        let vectors: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..64).map(|_| scale * next()).collect())
            .collect();
        let query: Vec<f32> = (0..64).map(|_| scale * next()).collect();
        let m = index_of(MetricKind::Cos, &vectors)
            .exact_search(&query, 4)
            .unwrap();
        for (key, d) in m.keys.iter().zip(&m.distances) {
            let want = reference(MetricKind::Cos, &query, &vectors[*key as usize]);
            assert!(
                (f64::from(*d) - want).abs() < 1e-5,
                "scale {scale}: {d} against {want}"
            );
        }
    }
    // Zero vectors under cosine: NumKong's 0 for two, 1 for one.
    let zero = index_of(MetricKind::Cos, &[vec![0.0; 20], vec![1.0; 20]]);
    let m = zero.exact_search(&[0.0f32; 20], 2).unwrap();
    let by_key = |k: u64| m.distances[m.keys.iter().position(|x| *x == k).unwrap()];
    assert_eq!((by_key(0), by_key(1)), (0.0, 1.0));
}
