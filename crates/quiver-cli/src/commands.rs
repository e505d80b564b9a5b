//! One function per subcommand.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use quiver::{
    Alter, CollectionConfig, Include, Plan, Progress, Record, SearchOptions, Store, StoreOptions,
};
use serde::Serialize;

use crate::output::{input, progress_bar, table, CliResult, Failure, Out};
use crate::{Cli, Command};

pub(crate) fn run(cli: &Cli) -> CliResult<ExitCode> {
    let mut out = Out::new(cli.json);
    let code = match &cli.command {
        Command::Create(a) => {
            let mut config = CollectionConfig::new(a.dim);
            config.metric = a.metric.parse()?;
            config.scalar = a.scalar.parse()?;
            config.connectivity = a.connectivity;
            config.expansion_add = a.expansion_add;
            config.expansion_search = a.expansion_search;
            // Validate before the store directory is touched.
            quiver::validate_name(&a.name)?;
            config.validate()?;
            let store = open_write(cli, true)?;
            store.create_collection(&a.name, &config)?;
            store.close()?;
            ExitCode::SUCCESS
        }
        Command::List => {
            let store = open_read(cli)?;
            let all = store.list_collections()?;
            if out.human {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.count.to_string(),
                            c.config.dimension.to_string(),
                            c.config.metric.to_string(),
                            c.config.scalar.to_string(),
                            c.config.connectivity.to_string(),
                        ]
                    })
                    .collect();
                out.line(&table(
                    &["NAME", "RECORDS", "DIM", "METRIC", "SCALAR", "M"],
                    &rows,
                ))?;
            } else {
                for c in &all {
                    out.json(&serde_json::json!({
                        "name": c.name, "count": c.count, "seq": c.seq, "config": c.config,
                    }))?;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Info { name } => {
            let store = open_read(cli)?;
            let info = store.get_collection(name)?.info()?;
            if out.human {
                out.line(&human_info(&info))?;
            } else {
                out.json(&info)?;
            }
            ExitCode::SUCCESS
        }
        Command::Drop { name } => {
            let store = open_write(cli, false)?;
            if !store.drop_collection(name)? {
                return Err(quiver::Error::NoSuchCollection { name: name.clone() }.into());
            }
            ExitCode::SUCCESS
        }
        Command::Import(a) => {
            let store = open_write(cli, false)?;
            crate::import::run(&store, a, &mut out)?;
            out.flush()?;
            store.close()?;
            ExitCode::SUCCESS
        }
        Command::Upsert(a) => {
            let store = open_write(cli, false)?;
            let coll = store.get_collection(&a.name)?;
            let mut record = Record::new(a.id.clone(), parse_vector("--vector", &a.vector)?);
            record.text = a.text.clone();
            if let Some(m) = &a.metadata {
                record.metadata = Some(
                    serde_json::from_str(m)
                        .or_else(|e| input(format!("--metadata is not valid JSON: {e}")))?,
                );
            }
            let seq = coll.upsert(&[record])?;
            out.json(&serde_json::json!({"upserted": 1, "seq": seq}))?;
            out.flush()?;
            store.close()?;
            ExitCode::SUCCESS
        }
        Command::Get { name, ids } => {
            let store = open_read(cli)?;
            let coll = store.get_collection(name)?;
            for id in ids {
                match coll.get(id)? {
                    Some(r) => out.json(&r)?,
                    None => out.json(&serde_json::json!({"id": id, "missing": true}))?,
                }
            }
            ExitCode::SUCCESS
        }
        Command::Delete { name, ids } => {
            let store = open_write(cli, false)?;
            let n = store.get_collection(name)?.delete(ids)?;
            out.json(&serde_json::json!({"deleted": n}))?;
            out.flush()?;
            store.close()?;
            ExitCode::SUCCESS
        }
        Command::Count { name } => {
            let store = open_read(cli)?;
            let n = store.get_collection(name)?.count()?;
            out.line(&n.to_string())?;
            ExitCode::SUCCESS
        }
        Command::Search(a) => {
            search(cli, a, &mut out)?;
            ExitCode::SUCCESS
        }
        Command::Verify { name } => {
            let store = open_read(cli)?;
            let report = store.get_collection(name)?.verify()?;
            if out.human {
                let status = if report.ok() { "ok" } else { "DAMAGED" };
                out.line(&format!(
                    "{status}: {} records, {} indexed, {} vectors compared, {} searched for",
                    report.records,
                    report.indexed,
                    report.vectors_checked,
                    report.reachability_checked
                ))?;
                for p in &report.problems {
                    out.line(&format!("  - {p}"))?;
                }
            } else {
                out.json(&serde_json::json!({"ok": report.ok(), "report": report}))?;
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Repair { name } => {
            let store = open_write(cli, false)?;
            let info = store.get_collection(name)?.repair()?;
            out.json(&serde_json::json!({"repaired": name, "vectors": info.index.vectors, "seq": info.seq}))?;
            ExitCode::SUCCESS
        }
        Command::Compact { name, force } => {
            let store = open_write(cli, false)?;
            let report = store.get_collection(name)?.compact(*force)?;
            out.json(&report)?;
            ExitCode::SUCCESS
        }
        Command::Alter(a) => {
            let change = Alter {
                metric: a.metric.as_deref().map(str::parse).transpose()?,
                scalar: a.scalar.as_deref().map(str::parse).transpose()?,
                connectivity: a.connectivity,
                expansion_add: a.expansion_add,
                expansion_search: a.expansion_search,
            };
            if change == Alter::default() {
                return input("alter: nothing to change (give --metric, --scalar, --connectivity, --expansion-add or --expansion-search)");
            }
            let store = open_write(cli, false)?;
            let info = store.get_collection(&a.name)?.alter(&change)?;
            out.json(&serde_json::json!({"altered": a.name, "config": info.config}))?;
            ExitCode::SUCCESS
        }
        Command::Flush { name } => {
            let store = open_write(cli, false)?;
            store.get_collection(name)?.flush()?;
            ExitCode::SUCCESS
        }
        Command::Demo(a) => {
            crate::demo::run(a, &mut out)?;
            ExitCode::SUCCESS
        }
    };
    out.flush()?;
    Ok(code)
}

fn human_info(info: &quiver::CollectionInfo) -> String {
    let c = &info.config;
    let mut lines = vec![
        format!("name:            {}", info.name),
        format!("records:         {}", info.count),
        format!(
            "config:          dim {} · metric {} · scalar {} · M {} · ef_add {} · ef {}",
            c.dimension, c.metric, c.scalar, c.connectivity, c.expansion_add, c.expansion_search
        ),
        format!(
            "sequence:        {} (index at {})",
            info.seq, info.applied_seq
        ),
    ];
    match &info.snapshot {
        Some(s) => lines.push(format!(
            "snapshot:        applied_seq {} · {} vectors · {} bytes · usearch {}",
            s.applied_seq, s.vectors, s.bytes, s.usearch_version
        )),
        None => lines.push("snapshot:        none".into()),
    }
    lines.push(format!(
        "tail:            {} changes after the snapshot",
        info.tail
    ));
    lines.push(format!(
        "index:           {} · {} vectors · {} free slots · capacity {} · {:.1} MiB",
        info.index.kind,
        info.index.vectors,
        info.index.deleted_slots,
        info.index.capacity,
        info.index.memory_bytes as f64 / 1048576.0
    ));
    let mut load = format!(
        "loaded:          {:?} in {:.1} ms, tail replayed {}",
        info.load.source, info.load.millis, info.load.tail_replayed
    )
    .to_lowercase();
    if let Some(r) = &info.load.reason {
        load.push_str(&format!(" ({r})"));
    }
    lines.push(load);
    if let Some(e) = &info.snapshot_error {
        lines.push(format!("snapshot error:  {e}"));
    }
    lines.join("\n")
}

#[derive(Serialize)]
struct SearchLine<'a> {
    hits: &'a [quiver::Hit],
    plan: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ef: Option<usize>,
}

fn search(cli: &Cli, a: &crate::SearchArgs, out: &mut Out) -> CliResult<()> {
    let mut include = Include::default();
    for field in &a.include {
        match field.trim() {
            "text" => include.text = true,
            "metadata" => include.metadata = true,
            "vector" => include.vector = true,
            other => {
                return input(format!(
                    "--include: unknown field {other:?} (use text, metadata, vector)"
                ))
            }
        }
    }
    let mut opts = SearchOptions::new(a.k).exact(a.exact).include(include);
    opts.ef = a.ef;
    // Check what needs no store first, so bad flags fail fast.
    if a.k == 0 || a.k > quiver::MAX_K {
        return input(format!("-k must be 1..={}, got {}", quiver::MAX_K, a.k));
    }
    let store = open_read(cli)?;
    let coll = store.get_collection(&a.name)?;
    let dim = coll.config().dimension;
    let mut emit = |q: &[f32]| -> CliResult<()> {
        let r = coll.search(q, &opts)?;
        let (plan, ef) = match r.plan {
            Plan::Hnsw { ef } => ("hnsw", Some(ef)),
            Plan::Exact => ("exact", None),
        };
        out.json(&SearchLine {
            hits: &r.hits,
            plan,
            ef,
        })
    };
    match (&a.vector, &a.queries) {
        (Some(v), _) => emit(&parse_vector("--vector", v)?)?,
        (None, Some(path)) => {
            let queries = read_f32_rows(path, dim, "--queries")?;
            for q in queries.chunks_exact(dim) {
                emit(q)?;
            }
        }
        (None, None) => return input("give --vector or --queries"),
    }
    Ok(())
}

/// Parse a JSON array of numbers into f32s.
pub(crate) fn parse_vector(flag: &str, text: &str) -> CliResult<Vec<f32>> {
    match serde_json::from_str::<Vec<f64>>(text) {
        Ok(v) => Ok(v.into_iter().map(|x| x as f32).collect()),
        Err(e) => input(format!("{flag}: expected a JSON array of numbers ({e})")),
    }
}

/// Read a raw little-endian f32 file of rows of `dim`.
pub(crate) fn read_f32_rows(path: &Path, dim: usize, flag: &str) -> CliResult<Vec<f32>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return input(format!("{flag}: cannot read {}: {e}", path.display())),
    };
    let row = dim * 4;
    if bytes.is_empty() || bytes.len() % row != 0 {
        return input(format!(
            "{flag}: {} is {} bytes, not a whole number of {dim}-d f32 rows ({row} bytes each)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn store_options() -> StoreOptions {
    let bar: Arc<Mutex<Option<indicatif::ProgressBar>>> = Arc::new(Mutex::new(None));
    let progress = move |p: &Progress| {
        let mut slot = bar.lock().unwrap_or_else(|e| e.into_inner());
        let b = slot.get_or_insert_with(|| progress_bar(p.total, p.phase));
        b.set_length(p.total);
        b.set_position(p.done);
        if p.done >= p.total {
            b.finish_and_clear();
            *slot = None;
        }
    };
    StoreOptions {
        progress: Some(Arc::new(progress)),
        ..StoreOptions::default()
    }
}

/// Open for writing. Only `create` may make a new store; other commands
/// refuse a directory without one, so bad input leaves nothing behind.
fn open_write(cli: &Cli, may_create: bool) -> CliResult<Store> {
    let dir = cli.store_dir();
    if !may_create && !dir.join(quiver::DB_FILE).is_file() {
        return Err(no_store(&dir));
    }
    Ok(Store::open_with(&dir, store_options())?)
}

fn open_read(cli: &Cli) -> CliResult<Store> {
    let dir = cli.store_dir();
    if !dir.join(quiver::DB_FILE).is_file() {
        return Err(no_store(&dir));
    }
    Ok(Store::open_read_only_with(&dir, store_options())?)
}

fn no_store(dir: &Path) -> Failure {
    Failure::Input(format!(
        "no quiver store at {} (create a collection first, or pass --store / set QUIVER_STORE)",
        dir.display()
    ))
}
