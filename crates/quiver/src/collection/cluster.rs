//! Clustering a collection: k-means over its exact f32 vectors, read from
//! SQLite in one consistent state (the algorithm is in `kmeans.rs`).

use super::Collection;
use crate::config::Metric;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::kmeans;

/// Options of [`Collection::cluster`]. Defaults: seed 0, one seeding
/// (`runs`, scikit-learn's `n_init`), at most 300 iterations, every record.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Clusters wanted: at least 1, at most the records clustered.
    pub k: usize,
    /// Cluster only the records that match.
    pub filter: Option<Filter>,
    /// The same seed on the same records gives the same clusters.
    pub seed: u64,
    /// Seedings tried; the one of least inertia is kept.
    pub runs: usize,
    /// Lloyd iterations at most, per seeding.
    pub max_iter: usize,
}

/// Largest `runs` or `max_iter` accepted (a typo should not run for days).
const MAX_RUNS: usize = 1_000;
const MAX_ITER: usize = 100_000;

impl ClusterOptions {
    /// `k` clusters, with the defaults.
    pub fn new(k: usize) -> Self {
        ClusterOptions {
            k,
            filter: None,
            seed: 0,
            runs: 1,
            max_iter: 300,
        }
    }

    /// Cluster only the records matching `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The seed of k-means++.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Seedings to try (the best is kept).
    pub fn runs(mut self, runs: usize) -> Self {
        self.runs = runs;
        self
    }

    /// Iterations at most per seeding.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }
}

/// One cluster of a [`Clustering`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cluster {
    /// Records in it.
    pub size: usize,
    /// The id of its record nearest the centroid (none if it is empty).
    pub medoid: Option<String>,
    /// Its centroid: the mean of its vectors, or for a cosine collection
    /// the unit vector in that direction.
    pub centroid: Vec<f32>,
}

/// What [`Collection::cluster`] found.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// The clusters, numbered by position.
    pub clusters: Vec<Cluster>,
    /// Each record clustered, in id order, with its cluster's number.
    pub assignments: Vec<(String, usize)>,
    /// The sum of squared Euclidean distances from each vector to its
    /// cluster's mean (for a cosine collection, from each vector scaled
    /// to unit length): scikit-learn's `inertia_`, so the two compare.
    pub inertia: f64,
    /// Iterations of the kept seeding.
    pub iterations: usize,
    /// Whether the clustering was spherical (a cosine collection: vectors
    /// and centroids unit length, records go to the centroid of highest
    /// cosine).
    pub spherical: bool,
}

impl Collection {
    /// k-means clusters of the collection's records (or those matching the
    /// filter), over their exact f32 vectors: greedy k-means++ seeding,
    /// then Lloyd iterations until no record changes cluster or the
    /// centroids move less than scikit-learn's tolerance (1e-4 of the mean
    /// variance). Spherical for `cos`; Euclidean for `ip` and `l2`. Uses
    /// every core; deterministic for a seed.
    ///
    /// ```
    /// use quiver::{ClusterOptions, CollectionConfig, Metric, Record, Store};
    /// let store = Store::open_in_memory()?;
    /// let mut config = CollectionConfig::new(2);
    /// config.metric = Metric::L2;
    /// let coll = store.create_collection("points", &config)?;
    /// let records: Vec<Record> = (0..20)
    ///     .map(|i| Record::new(format!("p{i:02}"), vec![(i % 2) as f32 * 10.0, (i as f32) / 100.0]))
    ///     .collect();
    /// coll.upsert(&records)?;
    /// let found = coll.cluster(&ClusterOptions::new(2).seed(7))?;
    /// assert_eq!(found.clusters.iter().map(|c| c.size).sum::<usize>(), 20);
    /// assert_eq!(found.clusters[0].size, 10);
    /// # Ok::<(), quiver::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `k` of 0 or above the records to
    /// cluster, `runs` or `max_iter` of 0 or absurdly large, or a metric
    /// k-means has no means for (`hamming`); [`Error::InvalidFilter`];
    /// SQLite failures.
    pub fn cluster(&self, options: &ClusterOptions) -> Result<Clustering> {
        let invalid = |reason: String| Err(Error::InvalidArgument { reason });
        let config = self.config();
        let spherical = match config.metric {
            Metric::Cos => true,
            Metric::Ip | Metric::L2 => false,
            other => {
                return invalid(format!(
                    "k-means needs a cos, ip or l2 collection, not {other}"
                ))
            }
        };
        if options.k == 0 {
            return invalid("k must be at least 1".into());
        }
        if !(1..=MAX_RUNS).contains(&options.runs) {
            return invalid(format!("runs must be 1 to {MAX_RUNS}"));
        }
        if !(1..=MAX_ITER).contains(&options.max_iter) {
            return invalid(format!("max_iter must be 1 to {MAX_ITER}"));
        }
        let dim = config.dimension;
        let mut ids = Vec::new();
        let mut data = Vec::new();
        self.for_each_record(options.filter.as_ref(), |r| {
            let start = data.len();
            data.extend_from_slice(&r.vector);
            if spherical {
                kmeans::normalise(&mut data[start..]);
            }
            ids.push(r.id);
            Ok(())
        })?;
        if options.k > ids.len() {
            return invalid(format!(
                "k is {} but only {} records are there to cluster",
                options.k,
                ids.len()
            ));
        }
        let fit = kmeans::fit(
            &data,
            dim,
            &kmeans::Params {
                k: options.k,
                seed: options.seed,
                runs: options.runs,
                max_iter: options.max_iter,
                spherical,
            },
        );
        let mut clusters: Vec<Cluster> = fit
            .centroids
            .chunks_exact(dim)
            .map(|c| Cluster {
                size: 0,
                medoid: None,
                centroid: c.to_vec(),
            })
            .collect();
        let mut nearest = vec![f32::INFINITY; options.k];
        for (i, &l) in fit.labels.iter().enumerate() {
            let l = l as usize;
            clusters[l].size += 1;
            if fit.distances[i] < nearest[l] {
                nearest[l] = fit.distances[i];
                clusters[l].medoid = Some(ids[i].clone());
            }
        }
        let assignments = ids
            .into_iter()
            .zip(fit.labels.iter().map(|&l| l as usize))
            .collect();
        Ok(Clustering {
            clusters,
            assignments,
            inertia: fit.inertia,
            iterations: fit.iterations,
            spherical,
        })
    }
}
