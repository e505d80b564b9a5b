//! k-means over f32 rows: greedy k-means++ seeding and Lloyd iterations,
//! the way scikit-learn's `KMeans` runs them (same seeding rule, same
//! stopping rule, same empty-cluster repair), so their inertias compare.
//! Spherical on request: rows are unit vectors and centroids are
//! renormalised after each update, so rows go to the centroid of highest
//! cosine.
//!
//! Deterministic for a seed on any number of threads: each row's work is
//! independent, and every sum is taken in row order.

use crate::gemm::{gemm, View};

/// What to fit.
pub(crate) struct Params {
    pub k: usize,
    pub seed: u64,
    /// Seedings tried; the fit of least inertia is kept (scikit-learn's `n_init`).
    pub runs: usize,
    pub max_iter: usize,
    /// Rows are unit vectors; keep centroids unit too (cosine).
    pub spherical: bool,
}

/// A fitted clustering.
pub(crate) struct Fit {
    /// `k × dim`, row-major.
    pub centroids: Vec<f32>,
    /// Each row's cluster.
    pub labels: Vec<u32>,
    /// Each row's squared distance to its centroid.
    pub distances: Vec<f32>,
    /// Sum of squared distances from each row to its cluster's mean:
    /// scikit-learn's definition (for spherical fits, whose centroids are
    /// unit directions, the means are used here all the same).
    pub inertia: f64,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
}

/// Rows per unit of parallel work.
const CHUNK: usize = 512;

/// Fit `p.k` clusters to the `data.len() / dim` rows of `data`.
/// Needs `1 <= p.k <= rows` and `p.runs >= 1` (the caller checks).
pub(crate) fn fit(data: &[f32], dim: usize, p: &Params) -> Fit {
    let rows = Rows::new(data, dim);
    let tol = 1e-4 * rows.mean_variance();
    let mut rng = SplitMix(p.seed);
    let mut best: Option<Fit> = None;
    for _ in 0..p.runs.max(1) {
        let seeds = seed_plus_plus(&rows, p.k, &mut rng);
        let fit = lloyd(&rows, seeds, p, tol);
        if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
            best = Some(fit);
        }
    }
    best.unwrap_or_else(|| unreachable!("runs >= 1"))
}

/// The rows and their squared norms.
struct Rows<'a> {
    data: &'a [f32],
    dim: usize,
    n: usize,
    norms: Vec<f32>,
}

impl<'a> Rows<'a> {
    fn new(data: &'a [f32], dim: usize) -> Self {
        let n = data.len() / dim.max(1);
        let norms = (0..n)
            .map(|i| data[i * dim..(i + 1) * dim].iter().map(|x| x * x).sum())
            .collect();
        Rows {
            data,
            dim,
            n,
            norms,
        }
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The mean over components of each component's variance.
    fn mean_variance(&self) -> f64 {
        let (n, d) = (self.n as f64, self.dim);
        let mut sum = vec![0f64; d];
        let mut sq = vec![0f64; d];
        for i in 0..self.n {
            for (j, &x) in self.row(i).iter().enumerate() {
                sum[j] += x as f64;
                sq[j] += (x as f64) * (x as f64);
            }
        }
        (0..d)
            .map(|j| sq[j] / n - (sum[j] / n).powi(2))
            .sum::<f64>()
            / d as f64
    }

    /// Squared distances from every row to each of `centres` (`m × dim`),
    /// row-major `n × m`.
    fn distances(&self, centres: &[f32]) -> Vec<f32> {
        let m = centres.len() / self.dim;
        let cnorms: Vec<f32> = centres
            .chunks_exact(self.dim)
            .map(|c| c.iter().map(|x| x * x).sum())
            .collect();
        let chunks = par_chunks(self.n, |start, end| {
            let rows = end - start;
            let mut dots = vec![0f32; rows * m];
            gemm(
                rows,
                self.dim,
                m,
                1.0,
                View::rows(self.data, start * self.dim, self.dim),
                View::transposed(centres, 0, self.dim),
                0.0,
                &mut dots,
                0,
                m,
            );
            for (r, row) in dots.chunks_exact_mut(m).enumerate() {
                let xn = self.norms[start + r];
                for (d, cn) in row.iter_mut().zip(&cnorms) {
                    *d = (xn - 2.0 * *d + cn).max(0.0);
                }
            }
            dots
        });
        chunks.concat()
    }
}

/// `work(start, end)` over consecutive runs of [`CHUNK`] rows of `0..n`,
/// on every core; the results in row order.
fn par_chunks<T: Send>(n: usize, work: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    crate::parallel::map(n.div_ceil(CHUNK), |c| {
        work(c * CHUNK, ((c + 1) * CHUNK).min(n))
    })
}

/// Greedy k-means++ (scikit-learn's): each new centre is the best, by the
/// potential it leaves, of `2 + ln k` rows drawn with probability
/// proportional to their squared distance to the centres so far.
fn seed_plus_plus(rows: &Rows<'_>, k: usize, rng: &mut SplitMix) -> Vec<f32> {
    let dim = rows.dim;
    let trials = 2 + (k as f64).ln() as usize;
    let first = rng.below(rows.n);
    let mut centres = rows.row(first).to_vec();
    let mut closest = rows.distances(rows.row(first));
    let mut potential: f64 = closest.iter().map(|&d| d as f64).sum();
    while centres.len() < k * dim {
        let cumulative: Vec<f64> = closest
            .iter()
            .scan(0f64, |s, &d| {
                *s += d as f64;
                Some(*s)
            })
            .collect();
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let r = rng.unit() * potential;
                cumulative.partition_point(|&c| c < r).min(rows.n - 1)
            })
            .collect();
        let mut block = Vec::with_capacity(trials * dim);
        for &c in &candidates {
            block.extend_from_slice(rows.row(c));
        }
        let d = rows.distances(&block);
        let mut best = (f64::INFINITY, 0);
        for t in 0..trials {
            let pot: f64 = (0..rows.n)
                .map(|i| closest[i].min(d[i * trials + t]) as f64)
                .sum();
            if pot < best.0 {
                best = (pot, t);
            }
        }
        let t = best.1;
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(d[i * trials + t]);
        }
        potential = best.0;
        centres.extend_from_slice(rows.row(candidates[t]));
    }
    centres
}

/// Each row's nearest centre (lowest index on ties) and its squared distance.
fn assign(rows: &Rows<'_>, centres: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let k = centres.len() / rows.dim;
    let d = rows.distances(centres);
    d.chunks_exact(k)
        .map(|row| {
            let (j, &dist) = row
                .iter()
                .enumerate()
                .fold(
                    (0, &f32::INFINITY),
                    |b, (j, x)| if *x < *b.1 { (j, x) } else { b },
                );
            (j as u32, dist)
        })
        .unzip()
}

/// The mean of each cluster's rows (f64 sums in row order), and the sizes.
fn means(rows: &Rows<'_>, labels: &[u32], k: usize) -> (Vec<f64>, Vec<usize>) {
    let dim = rows.dim;
    let mut sums = vec![0f64; k * dim];
    let mut sizes = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        sizes[l] += 1;
        for (s, &x) in sums[l * dim..(l + 1) * dim].iter_mut().zip(rows.row(i)) {
            *s += x as f64;
        }
    }
    for (j, &size) in sizes.iter().enumerate() {
        if size > 0 {
            sums[j * dim..(j + 1) * dim]
                .iter_mut()
                .for_each(|s| *s /= size as f64);
        }
    }
    (sums, sizes)
}

fn lloyd(rows: &Rows<'_>, mut centres: Vec<f32>, p: &Params, tol: f64) -> Fit {
    let (dim, k) = (rows.dim, p.k);
    let mut labels: Vec<u32> = Vec::new();
    // Set when the last assignment was made with the final centres.
    let mut distances: Option<Vec<f32>> = None;
    let mut iterations = 0;
    while iterations < p.max_iter {
        iterations += 1;
        let (new_labels, d) = assign(rows, &centres);
        if new_labels == labels {
            distances = Some(d);
            break;
        }
        labels = new_labels;
        let (mean, sizes) = means(rows, &labels, k);
        let mut next: Vec<f32> = mean.iter().map(|&x| x as f32).collect();
        relocate_empty(rows, &sizes, &d, &mut next);
        if p.spherical {
            for c in next.chunks_exact_mut(dim) {
                normalise(c);
            }
        }
        let shift: f64 = centres
            .iter()
            .zip(&next)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        centres = next;
        if shift <= tol {
            break;
        }
    }
    // The labels returned are those of the final centres.
    let distances = match distances {
        Some(d) => d,
        None => {
            let (l, d) = assign(rows, &centres);
            labels = l;
            d
        }
    };
    let (mean, _) = means(rows, &labels, k);
    let inertia = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let m = &mean[l as usize * dim..(l as usize + 1) * dim];
            rows.row(i)
                .iter()
                .zip(m)
                .map(|(&x, &c)| (x as f64 - c).powi(2))
                .sum::<f64>()
        })
        .sum();
    Fit {
        centroids: centres,
        labels,
        distances,
        inertia,
        iterations,
    }
}

/// An empty cluster takes the row farthest from its centre (scikit-learn
/// does the same), one distinct row per empty cluster.
fn relocate_empty(rows: &Rows<'_>, sizes: &[usize], distances: &[f32], centres: &mut [f32]) {
    let dim = rows.dim;
    let empty: Vec<usize> = (0..sizes.len()).filter(|&j| sizes[j] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let mut far: Vec<usize> = (0..rows.n).collect();
    far.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]).then(a.cmp(&b)));
    for (j, &i) in empty.iter().zip(&far) {
        centres[j * dim..(j + 1) * dim].copy_from_slice(rows.row(i));
    }
}

/// Scale `v` to unit length (a zero vector stays zero).
pub(crate) fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
    }
}

/// SplitMix64: small, fast, and the same on every platform.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around `centres`, `per` each, with a small deterministic jitter.
    fn blobs(centres: &[[f32; 2]], per: usize) -> Vec<f32> {
        let mut rng = SplitMix(7);
        let mut out = Vec::new();
        for c in centres {
            for _ in 0..per {
                out.push(c[0] + (rng.unit() as f32 - 0.5) * 0.2);
                out.push(c[1] + (rng.unit() as f32 - 0.5) * 0.2);
            }
        }
        out
    }

    fn params(k: usize, seed: u64) -> Params {
        Params {
            k,
            seed,
            runs: 1,
            max_iter: 300,
            spherical: false,
        }
    }

    #[test]
    fn finds_separated_blobs() {
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let data = blobs(&centres, 300);
        let fit = fit(&data, 2, &params(4, 1));
        // Each blob is one cluster: the 300 rows of a blob share a label,
        // and the four labels differ.
        let mut seen = std::collections::HashSet::new();
        for (b, centre) in centres.iter().enumerate() {
            let l = fit.labels[b * 300];
            assert!(fit.labels[b * 300..(b + 1) * 300].iter().all(|&x| x == l));
            assert!(seen.insert(l));
            let c = &fit.centroids[l as usize * 2..l as usize * 2 + 2];
            assert!((c[0] - centre[0]).abs() < 0.05 && (c[1] - centre[1]).abs() < 0.05);
        }
        // Uniform jitter of width 0.2 in two components: 2 · 0.2²/12 per row.
        let expected = 1200.0 * 2.0 * 0.04 / 12.0;
        assert!(
            (fit.inertia - expected).abs() < 0.1 * expected,
            "{}",
            fit.inertia
        );
    }

    #[test]
    fn deterministic_for_a_seed_and_different_across_seeds() {
        let mut rng = SplitMix(3);
        let data: Vec<f32> = (0..5000 * 8).map(|_| rng.unit() as f32).collect();
        let a = fit(&data, 8, &params(20, 42));
        let b = fit(&data, 8, &params(20, 42));
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centroids, b.centroids);
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
        let c = fit(&data, 8, &params(20, 43));
        assert_ne!(a.centroids, c.centroids);
    }

    #[test]
    fn inertia_is_the_sum_to_the_means_and_more_runs_never_worsen_it() {
        let mut rng = SplitMix(9);
        let data: Vec<f32> = (0..3000 * 4).map(|_| rng.unit() as f32).collect();
        let one = fit(&data, 4, &params(12, 5));
        let mut more = params(12, 5);
        more.runs = 4;
        let four = fit(&data, 4, &more);
        // The first of the four runs is the single run: the best of four
        // can only be as good or better.
        assert!(four.inertia <= one.inertia);
        // Recompute the inertia by hand from the labels.
        let mut sums = vec![[0f64; 4]; 12];
        let mut sizes = [0usize; 12];
        for (i, &l) in one.labels.iter().enumerate() {
            sizes[l as usize] += 1;
            for j in 0..4 {
                sums[l as usize][j] += data[i * 4 + j] as f64;
            }
        }
        let by_hand: f64 = one
            .labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                (0..4)
                    .map(|j| {
                        (data[i * 4 + j] as f64 - sums[l as usize][j] / sizes[l as usize] as f64)
                            .powi(2)
                    })
                    .sum::<f64>()
            })
            .sum();
        assert!((by_hand - one.inertia).abs() < 1e-9 * by_hand);
    }

    #[test]
    fn spherical_centroids_are_unit_and_k_equal_to_rows_is_exact() {
        let mut rng = SplitMix(11);
        let mut data: Vec<f32> = (0..400 * 16).map(|_| rng.unit() as f32 - 0.5).collect();
        for row in data.chunks_exact_mut(16) {
            normalise(row);
        }
        let mut p = params(7, 1);
        p.spherical = true;
        let fit = fit(&data, 16, &p);
        for c in fit.centroids.chunks_exact(16) {
            let n: f32 = c.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-4, "{n}");
        }
        // Each row is with the centroid of highest cosine.
        for (i, &l) in fit.labels.iter().enumerate() {
            let row = &data[i * 16..(i + 1) * 16];
            let cos = |j: usize| -> f32 {
                row.iter()
                    .zip(&fit.centroids[j * 16..(j + 1) * 16])
                    .map(|(a, b)| a * b)
                    .sum()
            };
            let best = (0..7).map(cos).fold(f32::MIN, f32::max);
            assert!(cos(l as usize) >= best - 1e-5);
        }
        // As many clusters as rows: every row its own, inertia zero.
        let small = &data[..10 * 16];
        let fit = super::fit(small, 16, &params(10, 2));
        let mut labels = fit.labels.clone();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 10);
        assert!(fit.inertia < 1e-9);
    }
}
