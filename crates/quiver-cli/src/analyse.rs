//! Commands that study a collection's vectors rather than look records
//! up: `cluster` (k-means), `join` and `dedup`.

use std::process::ExitCode;

use quiver::{ClusterOptions, DedupOptions, JoinOptions, Update};
use serde_json::json;

use crate::open::{open_read, open_write, parse_filter};
use crate::output::{input, table, CliResult, Out};
use crate::Cli;

/// Arguments of `quiver cluster`.
#[derive(clap::Args, Debug)]
pub(crate) struct ClusterArgs {
    /// The collection.
    name: String,
    /// Clusters wanted.
    #[arg(short = 'k', long = "clusters", value_name = "N")]
    k: usize,
    /// Cluster only the records matching this filter.
    #[arg(long)]
    filter: Option<String>,
    /// Write each record's cluster number into this top-level metadata
    /// field (one transaction for all of them).
    #[arg(long, value_name = "FIELD")]
    into: Option<String>,
    /// Seed of k-means++: the same seed on the same records, the same clusters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seedings tried, the best kept (scikit-learn's n_init).
    #[arg(long, default_value_t = 1)]
    n_init: usize,
    /// Iterations at most per seeding.
    #[arg(long, default_value_t = 300)]
    max_iter: usize,
    /// Print each cluster's centroid too.
    #[arg(long)]
    centroids: bool,
}

/// `quiver cluster`: one line per cluster (number, size, medoid), then a
/// summary line with the inertia; `--into` writes the assignments.
pub(crate) fn cluster(cli: &Cli, a: &ClusterArgs, out: &mut Out) -> CliResult<ExitCode> {
    if let Some(field) = &a.into {
        check_field(field)?;
    }
    let mut options = ClusterOptions::new(a.k)
        .seed(a.seed)
        .runs(a.n_init)
        .max_iter(a.max_iter);
    if let Some(f) = parse_filter(a.filter.as_deref())? {
        options = options.filter(f);
    }
    // Writing needs the writable store; the clustering reads one state of it.
    let store = if a.into.is_some() {
        open_write(cli, false)?
    } else {
        open_read(cli)?
    };
    let coll = crate::open::collection(&store, &a.name)?;
    let found = coll.cluster(&options)?;
    let written = match &a.into {
        Some(field) => {
            let report = coll.write(|batch| {
                for (id, n) in &found.assignments {
                    batch.update(Update::new(id.clone()).merge(json!({ field.as_str(): n })))?;
                }
                Ok(())
            })?;
            Some(report.updated)
        }
        None => None,
    };
    let summary = json!({
        "clusters": found.clusters.len(),
        "records": found.assignments.len(),
        "inertia": found.inertia,
        "iterations": found.iterations,
        "spherical": found.spherical,
        "written": written,
    });
    if out.human {
        let rows: Vec<Vec<String>> = found
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut row = vec![
                    i.to_string(),
                    c.size.to_string(),
                    c.medoid.clone().unwrap_or_default(),
                ];
                if a.centroids {
                    row.push(format!("{:?}", c.centroid));
                }
                row
            })
            .collect();
        let mut header = vec!["cluster", "size", "medoid"];
        if a.centroids {
            header.push("centroid");
        }
        out.line(&table(&header, &rows))?;
        let mut line = format!(
            "{} records in {} clusters, inertia {:.6}, {} iterations{}",
            found.assignments.len(),
            found.clusters.len(),
            found.inertia,
            found.iterations,
            if found.spherical {
                " (spherical: cosine)"
            } else {
                ""
            },
        );
        if let (Some(n), Some(field)) = (written, &a.into) {
            line.push_str(&format!("; wrote {field} into {n} records"));
        }
        out.line(&line)?;
    } else {
        for (i, c) in found.clusters.iter().enumerate() {
            let mut line = json!({"cluster": i, "size": c.size, "medoid": c.medoid});
            if a.centroids {
                line["centroid"] = crate::output::exact_vector(&c.centroid);
            }
            out.json(&line)?;
        }
        out.json(&summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A top-level metadata key: what `merge` writes into.
fn check_field(field: &str) -> CliResult<()> {
    if field.is_empty()
        || field.len() > 128
        || !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return input(format!(
            "--into {field:?}: use a top-level metadata field name of 1 to 128 characters from A-Z a-z 0-9 _ -"
        ));
    }
    Ok(())
}

/// Arguments of `quiver join`.
#[derive(clap::Args, Debug)]
pub(crate) struct JoinArgs {
    /// The collection whose every record is matched.
    left: String,
    /// The collection searched for the matches (of the same dimension).
    right: String,
    /// Matches per left record.
    #[arg(short = 'k', long = "k", default_value_t = 1)]
    k: usize,
    /// Only pairs at most this far apart (the right collection's metric).
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    max_distance: Option<f32>,
    /// Only right records matching this filter.
    #[arg(long)]
    filter: Option<String>,
    /// Only left records matching this filter.
    #[arg(long, value_name = "FILTER")]
    left_filter: Option<String>,
    /// A matching: each record of either side in at most one pair (-k is 1).
    #[arg(long, conflicts_with = "k")]
    one_to_one: bool,
    /// Exact (brute-force) search instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// HNSW ef of the searches in RIGHT.
    #[arg(long)]
    ef: Option<usize>,
}

/// `quiver join`: one JSON line per pair, streamed in left id order; a
/// summary on stderr.
pub(crate) fn join(cli: &Cli, a: &JoinArgs, out: &mut Out) -> CliResult<ExitCode> {
    let options = JoinOptions {
        k: a.k,
        max_distance: a.max_distance,
        filter: parse_filter(a.filter.as_deref())?,
        left_filter: parse_filter(a.left_filter.as_deref())?,
        exact: a.exact,
        ef: a.ef,
        one_to_one: a.one_to_one,
    };
    let store = open_read(cli)?;
    let left = crate::open::collection(&store, &a.left)?;
    let right = crate::open::collection(&store, &a.right)?;
    let mut failed = None;
    let result = left.join(&right, &options, |pair| {
        out.json(&pair).map_err(|e| {
            failed = Some(e);
            quiver::Error::InvalidArgument {
                reason: "output closed".into(),
            }
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let report = result?;
    out.flush()?;
    eprintln!(
        "join {} -> {}: {} left records, {} pairs, {} without a match",
        a.left, a.right, report.left, report.pairs, report.unmatched
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `quiver dedup`.
#[derive(clap::Args, Debug)]
pub(crate) struct DedupArgs {
    /// The collection.
    name: String,
    /// Records at most this far apart are duplicates (the collection's metric).
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    max_distance: f32,
    /// Only records matching this filter.
    #[arg(long)]
    filter: Option<String>,
    /// Exact (brute-force) search instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// HNSW ef.
    #[arg(long)]
    ef: Option<usize>,
}

/// `quiver dedup`: one JSON line per group of near-duplicates (its ids,
/// sorted, and the largest distance linking it); a summary on stderr.
pub(crate) fn dedup(cli: &Cli, a: &DedupArgs, out: &mut Out) -> CliResult<ExitCode> {
    let mut options = DedupOptions::new(a.max_distance);
    options.filter = parse_filter(a.filter.as_deref())?;
    options.exact = a.exact;
    options.ef = a.ef;
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let mut failed = None;
    let mut records = 0usize;
    let result = coll.dedup(&options, |group| {
        records += group.ids.len();
        out.json(&group).map_err(|e| {
            failed = Some(e);
            quiver::Error::InvalidArgument {
                reason: "output closed".into(),
            }
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let groups = result?;
    out.flush()?;
    eprintln!(
        "dedup {}: {groups} groups of near-duplicates, {records} records in them",
        a.name
    );
    Ok(ExitCode::SUCCESS)
}
