//! Helpers shared by the integration tests.
#![allow(dead_code)]

use quiver::{Collection, Metric, Record};

/// A small deterministic generator (splitmix64): tests need no `rand`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        loop {
            let v: Vec<f32> = (0..dim).map(|_| self.f32()).collect();
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
    }
    /// Points around a few centres: realistic structure for HNSW.
    pub fn clustered(&mut self, dim: usize, centres: &[Vec<f32>]) -> Vec<f32> {
        let c = &centres[self.below(centres.len() as u64) as usize];
        assert_eq!(c.len(), dim);
        c.iter().map(|x| x + 0.3 * self.f32()).collect()
    }
}

/// Exact top-k ids over `(id, vector)` pairs.
pub fn brute_force(
    metric: Metric,
    data: &[(String, Vec<f32>)],
    q: &[f32],
    k: usize,
) -> Vec<String> {
    let mut scored: Vec<(f32, &String)> = data
        .iter()
        .map(|(id, v)| (quiver::distance(metric, q, v), id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.clone())
        .collect()
}

/// recall of `got` against `want`.
pub fn recall(got: &[String], want: &[String]) -> f64 {
    if want.is_empty() {
        return 1.0;
    }
    got.iter().filter(|g| want.contains(g)).count() as f64 / want.len() as f64
}

pub fn records(rng: &mut Rng, n: usize, dim: usize, prefix: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("{prefix}{i}"), rng.vector(dim)))
        .collect()
}

/// Every record of `expected` is in `coll` with exactly that vector, and the count matches.
pub fn assert_contents(coll: &Collection, expected: &std::collections::BTreeMap<String, Vec<f32>>) {
    assert_eq!(coll.count().unwrap(), expected.len() as u64, "record count");
    for (id, v) in expected {
        let got = coll
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("record {id} missing"));
        assert_eq!(&got.vector, v, "vector of {id}");
    }
}
