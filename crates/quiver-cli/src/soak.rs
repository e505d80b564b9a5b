//! `quiver debug-soak-writer`: the writer half of the kill soak (hidden).
//!
//! Loops forever over random writes on one collection, in one process:
//! batch upserts, deletes by id, deletes by filter, flushes and forced
//! compactions. Before each operation it prints a `{"begin": ..}` line and
//! after it a `{"ack": n}` line, flushed, so the parent that SIGKILLs it
//! knows what was acknowledged and what was in flight. Several may run at
//! once on one store, each on its own ids (`--writer`).

use std::io::Write;

use quiver::{CollectionConfig, Filter, Record, Store};
use serde_json::json;

use crate::output::{CliResult, Failure};

#[derive(clap::Args, Debug)]
pub(crate) struct SoakArgs {
    /// Seed of the operation sequence.
    #[arg(long)]
    seed: u64,
    /// Vector dimension.
    #[arg(long, default_value_t = 8)]
    dim: usize,
    /// This writer's number: it writes ids `s{w * POOL}..s{(w + 1) * POOL}`.
    #[arg(long, default_value_t = 0)]
    writer: u64,
}

/// Ids `s0..s{POOL}` are written.
pub const POOL: u64 = 200;

/// splitmix64, shared with the soak test to derive vectors from (id, version).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The vector of id `n` at `version`.
pub fn vector(n: u64, version: u64, dim: usize) -> Vec<f32> {
    let mut s = mix(n * 1_000_003 + version);
    (0..dim)
        .map(|_| {
            s = mix(s);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0 + 1e-3
        })
        .collect()
}

pub(crate) fn run(dir: &std::path::Path, args: &SoakArgs) -> CliResult<()> {
    let store = Store::open(dir)?;
    let coll = match store.collection("soak")? {
        Some(c) => c,
        None => match store.create_collection("soak", &CollectionConfig::new(args.dim)) {
            // Another writer made it first.
            Err(quiver::Error::CollectionExists { .. }) => store.get_collection("soak")?,
            made => made?,
        },
    };
    let base = args.writer * POOL;
    let mut rng = args.seed;
    let mut next = |n: u64| {
        rng = mix(rng);
        rng % n
    };
    let stdout = std::io::stdout();
    let say = |v: serde_json::Value| -> CliResult<()> {
        let mut out = stdout.lock();
        writeln!(out, "{v}")
            .and_then(|_| out.flush())
            .map_err(Failure::from)
    };
    for step in 0u64.. {
        let version = args.seed * 1_000_000 + step;
        match next(20) {
            0..=11 => {
                let ids: Vec<u64> = (0..1 + next(20)).map(|_| base + next(POOL)).collect();
                say(json!({"begin": step, "op": "upsert", "ids": ids, "version": version}))?;
                let batch: Vec<Record> = ids
                    .iter()
                    .map(|n| {
                        Record::new(format!("s{n}"), vector(*n, version, args.dim))
                            .with_text(format!("v{version}"))
                            .with_metadata(json!({"n": n}))
                    })
                    .collect();
                coll.upsert(&batch)?;
            }
            12..=15 => {
                let ids: Vec<u64> = (0..1 + next(5)).map(|_| base + next(POOL)).collect();
                say(json!({"begin": step, "op": "delete", "ids": ids}))?;
                let names: Vec<String> = ids.iter().map(|n| format!("s{n}")).collect();
                coll.delete(&names)?;
            }
            16 => {
                let lo = base + next(POOL - 5);
                say(json!({"begin": step, "op": "delete_where", "lo": lo, "hi": lo + 5}))?;
                coll.delete_where(&Filter::ge("n", lo as i64).and(Filter::lt("n", lo as i64 + 5)))?;
            }
            17 | 18 => {
                say(json!({"begin": step, "op": "flush"}))?;
                coll.flush()?;
            }
            _ => {
                say(json!({"begin": step, "op": "compact"}))?;
                coll.compact(true)?;
            }
        }
        say(json!({"ack": step}))?;
    }
    Ok(())
}
