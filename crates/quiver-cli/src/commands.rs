//! One function per subcommand, dispatched by `run` on the typed `Command`.

use std::path::Path;
use std::process::ExitCode;

use quiver::embed::Embedder;
use quiver::{Alter, CollectionConfig, Fusion, Include, Record, ScanOptions, SearchOptions};
use serde::Serialize;

use crate::open::{open_read, open_write, parse_filter};
use crate::output::{input, table, CliResult, Failure, Out};
use crate::vectors::{le_f32s, parse_vector, read_f32_rows};
use crate::{Cli, Command, Mode};

pub(crate) fn run(cli: &'static Cli) -> CliResult<ExitCode> {
    // The MCP server writes the protocol to stdout itself: `Out` holds
    // stdout's lock, so it must not exist meanwhile.
    if let Command::Mcp(a) = &cli.command {
        #[cfg(feature = "mcp")]
        return crate::mcp::serve(cli, a).map(|()| ExitCode::SUCCESS);
        #[cfg(not(feature = "mcp"))]
        {
            let _ = a;
            return crate::output::input(
                "this quiver was built without the MCP server: build with --features mcp",
            );
        }
    }
    let mut out = Out::new(cli.json);
    let code = match &cli.command {
        Command::Create(a) => create(cli, a, &mut out)?,
        Command::List => list(cli, &mut out)?,
        Command::Info { name } => info(cli, name, &mut out)?,
        Command::Drop { name } => drop_collection(cli, name, &mut out)?,
        Command::Import(a) => import(cli, a, &mut out)?,
        Command::Upsert(a) => upsert(cli, a, &mut out)?,
        Command::Update(a) => crate::edit::update(cli, a, &mut out)?,
        Command::Apply(a) => crate::edit::apply(cli, a, &mut out)?,
        Command::Get(a) => get(cli, a, &mut out)?,
        Command::Export(a) => crate::transfer::export(cli, a, &mut out)?,
        Command::Backup(a) => crate::transfer::backup(cli, a, &mut out)?,
        Command::Changes(a) => crate::feed::changes(cli, a, &mut out)?,
        Command::Consumers(a) => crate::feed::consumers(cli, a, &mut out)?,
        Command::Delete { name, ids, filter } => {
            delete(cli, name, ids, filter.as_deref(), &mut out)?
        }
        Command::Count { name, filter } => count(cli, name, filter.as_deref(), &mut out)?,
        Command::IndexField { name, field } => index_field(cli, name, field, &mut out)?,
        Command::Search(a) => search(cli, a, &mut out).map(|()| ExitCode::SUCCESS)?,
        Command::Verify { name } => verify(cli, name, &mut out)?,
        Command::Repair { name } => repair(cli, name, &mut out)?,
        Command::Compact { name, force } => compact(cli, name, *force, &mut out)?,
        Command::Alter(a) => alter(cli, a, &mut out)?,
        Command::Flush { name } => flush(cli, name, &mut out)?,
        Command::DebugSoakWriter(a) => debug_soak_writer(cli, a)?,
        Command::Embed(a) => embed(cli, a, &mut out)?,
        Command::Reembed(a) => reembed(cli, a, &mut out)?,
        Command::Demo(a) => demo(a, &mut out)?,
        Command::Cluster(a) => crate::analyse::cluster(cli, a, &mut out)?,
        Command::Join(a) => crate::analyse::join(cli, a, &mut out)?,
        Command::Dedup(a) => crate::analyse::dedup(cli, a, &mut out)?,
        Command::Mcp(_) => unreachable!("served above, without `out`"),
        #[cfg(feature = "milvus")]
        Command::Sync(a) => crate::milvus_sync::sync(cli, a, &mut out)?,
        #[cfg(not(feature = "milvus"))]
        Command::Sync(_) => {
            return input(
                "this quiver was built without Milvus support: build with --features milvus",
            )
        }
        Command::Completions { shell, .. } => {
            let mut cmd = crate::command();
            clap_complete::generate(*shell, &mut cmd, "quiver", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { .. } => {
            clap_mangen::Man::new(crate::command())
                .render(&mut std::io::stdout())
                .map_err(crate::output::Failure::from)?;
            ExitCode::SUCCESS
        }
    };
    out.flush()?;
    Ok(code)
}

fn create(cli: &Cli, a: &crate::CreateArgs, out: &mut Out) -> CliResult<ExitCode> {
    // $QUIVER_MODEL only where no dimension is given: it must not bind a
    // collection made with --dim behind the user's back.
    let model = match a.dim {
        Some(_) => crate::model::load(cli)?,
        None => crate::model::load_or_env(cli)?,
    };
    let dim = match (a.dim, &model) {
        (Some(d), Some(m)) if d != m.dimension() => {
            return input(format!(
                "--dim {d}, but the model makes {}-d vectors",
                m.dimension()
            ))
        }
        (Some(d), _) => d,
        (None, Some(m)) => m.dimension(),
        (None, None) => {
            return input("give --dim N (or --model DIR to take the model's dimension)")
        }
    };
    let mut config = CollectionConfig::new(dim);
    if let Some(m) = &model {
        config = CollectionConfig::for_embedder(m);
        let b = config.embedding.as_mut().expect("for_embedder binds");
        if let Some(p) = &a.query_prefix {
            b.query_prefix = p.clone();
        }
        if let Some(p) = &a.document_prefix {
            b.document_prefix = p.clone();
        }
    } else if a.query_prefix.is_some() || a.document_prefix.is_some() {
        return input("--query-prefix and --document-prefix need --model: they go before texts the model embeds");
    }
    config.metric = a.metric.parse()?;
    config.scalar = match &a.scalar {
        Some(s) => s.parse()?,
        None => quiver::Scalar::default_for(config.metric),
    };
    config.connectivity = a.connectivity;
    config.expansion_add = a.expansion_add;
    config.expansion_search = a.expansion_search;
    config.tokenizer = a.tokenizer.parse()?;
    // Validate before the store directory is touched.
    quiver::validate_name(&a.name)?;
    config.validate()?;
    let store = open_write(cli, true)?;
    store.create_collection(&a.name, &config)?;
    store.close()?;
    out.result(
        &serde_json::json!({"created": a.name, "config": config}),
        || {
            let model = config
                .embedding
                .as_ref()
                .map(|b| format!(", bound to {}", b.id))
                .unwrap_or_default();
            format!(
                "created {} ({}-d {}{model})",
                a.name, config.dimension, config.metric
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn list(cli: &Cli, out: &mut Out) -> CliResult<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}

fn info(cli: &Cli, name: &str, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_read(cli)?;
    let info = crate::open::collection(&store, name)?.info()?;
    if out.human {
        out.line(&human_info(&info))?;
    } else {
        out.json(&info)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn drop_collection(cli: &Cli, name: &str, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    if !store.drop_collection(name)? {
        return Err(crate::open::no_collection(&store, name));
    }
    out.result(&serde_json::json!({"dropped": name}), || {
        format!("dropped {name}")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn import(cli: &Cli, a: &crate::ImportArgs, out: &mut Out) -> CliResult<ExitCode> {
    if let Some(from) = &a.from {
        if a.batch == 0 {
            return input("--batch must be at least 1");
        }
        #[cfg(feature = "milvus")]
        return crate::milvus_sync::import_from(
            cli,
            &a.name,
            from,
            a.token_file.as_ref(),
            a.batch,
            out,
        );
        #[cfg(not(feature = "milvus"))]
        {
            let _ = from;
            return input(
                "this quiver was built without Milvus support: build with --features milvus",
            );
        }
    }
    // No store yet: an export's import may make one (see `import::run`).
    let store = if cli.store_dir().join(quiver::DB_FILE).is_file() {
        Some(open_write(cli, false)?)
    } else {
        None
    };
    crate::import::run(cli, store.as_ref(), a, out)?;
    out.flush()?;
    if let Some(store) = store {
        store.close()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn upsert(cli: &Cli, a: &crate::UpsertArgs, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let mut unbound = None;
    let vector = match (&a.vector, &a.text) {
        (Some(v), _) => parse_vector("--vector", v)?,
        (None, Some(t)) => {
            unbound = crate::model::ready(cli, &coll, "upsert --text without --vector")?;
            coll.embed_documents(&[t.as_str()])?.remove(0)
        }
        (None, None) => {
            return input("give --vector, or --text (embedded with the collection's model)")
        }
    };
    let mut record = Record::new(a.id.clone(), vector);
    record.text = a.text.clone();
    record.expires_at = a.expiry.resolve()?;
    if let Some(m) = &a.metadata {
        record.metadata = Some(
            serde_json::from_str(m)
                .or_else(|e| input(format!("--metadata is not valid JSON: {e}")))?,
        );
    }
    let was_empty = unbound.is_some() && coll.count()? == 0;
    let seq = coll.upsert(&[record])?;
    crate::model::bind_new(&coll, unbound, was_empty)?;
    out.result(&serde_json::json!({"upserted": 1, "seq": seq}), || {
        format!("upserted {} into {}", a.id, a.name)
    })?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

fn get(cli: &Cli, a: &crate::GetArgs, out: &mut Out) -> CliResult<ExitCode> {
    let filter = parse_filter(a.filter.as_deref())?;
    let mut vector = false;
    for field in &a.include {
        match field.trim() {
            "text" | "metadata" => {}
            "vector" => vector = true,
            other => {
                return input(format!(
                    "--include: unknown field {other:?} (use text, metadata, vector)"
                ))
            }
        }
    }
    if a.ids.is_empty() && a.limit == 0 {
        return input("--limit must be at least 1");
    }
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let show = |r: Record| crate::output::record_line(r, vector);
    if a.ids.is_empty() {
        let options = ScanOptions {
            filter,
            order_by: a.order_by.clone(),
            desc: a.desc,
            after: a.after.clone(),
            limit: a.limit,
        };
        let page = coll.scan_page(&options)?;
        if page.records.is_empty() && a.after.is_none() {
            crate::open::warn_missing_fields(&coll, options.filter.as_ref());
        }
        for r in page.records {
            out.json(&show(r))?;
        }
        if a.paged {
            out.json(&serde_json::json!({"next": page.next}))?;
        }
        if let Some(next) = &page.next {
            out.flush()?;
            eprintln!(
                "quiver: stopped at --limit {}; continue with --after '{next}'",
                a.limit
            );
        }
    }
    for id in &a.ids {
        match coll.get(id)? {
            Some(r) => out.json(&show(r))?,
            None => out.json(&serde_json::json!({"id": id, "missing": true}))?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(
    cli: &Cli,
    name: &str,
    ids: &[String],
    filter: Option<&str>,
    out: &mut Out,
) -> CliResult<ExitCode> {
    if ids.is_empty() && filter.is_none() {
        return input(format!(
            "delete needs the ids of the records to delete, or --filter EXPR for every record matching it (e.g. quiver delete {name} --filter \"tags CONTAINS 'old'\")"
        ));
    }
    let filter = parse_filter(filter)?;
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, name)?;
    let n = match &filter {
        Some(f) => coll.delete_where(f)?,
        None => coll.delete(ids)?,
    };
    if n == 0 {
        crate::open::warn_missing_fields(&coll, filter.as_ref());
    }
    out.result(&serde_json::json!({"deleted": n}), || {
        format!("deleted {n} records from {name}")
    })?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

fn count(cli: &Cli, name: &str, filter: Option<&str>, out: &mut Out) -> CliResult<ExitCode> {
    let filter = parse_filter(filter)?;
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, name)?;
    let n = match &filter {
        Some(f) => coll.count_where(f)?,
        None => coll.count()?,
    };
    if n == 0 {
        crate::open::warn_missing_fields(&coll, filter.as_ref());
    }
    out.line(&n.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn index_field(cli: &Cli, name: &str, field: &str, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    let added = crate::open::collection(&store, name)?.index_field(field)?;
    out.result(
        &serde_json::json!({"indexed": field, "created": added}),
        || {
            if added {
                format!("indexed {field} of {name}")
            } else {
                format!("{field} of {name} was indexed already")
            }
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn verify(cli: &Cli, name: &str, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_read(cli)?;
    let report = crate::open::collection(&store, name)?.verify()?;
    if out.human {
        let status = if report.ok() { "ok" } else { "DAMAGED" };
        out.line(&format!(
            "{status}: {} records, {} indexed, {} vectors compared, {} checked reachable",
            report.records, report.indexed, report.vectors_checked, report.reachability_checked
        ))?;
        for p in &report.problems {
            out.line(&format!("  - {p}"))?;
        }
        for n in &report.notes {
            out.line(&format!("  note: {n}"))?;
        }
    } else {
        out.json(&serde_json::json!({"ok": report.ok(), "report": report}))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn repair(cli: &Cli, name: &str, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    let info = crate::open::collection(&store, name)?.repair()?;
    out.result(
        &serde_json::json!({"repaired": name, "vectors": info.index.vectors, "seq": info.seq}),
        || {
            format!(
                "repaired {name}: index rebuilt with {} vectors",
                info.index.vectors
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn compact(cli: &Cli, name: &str, force: bool, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    let report = crate::open::collection(&store, name)?.compact(force)?;
    out.result(&report, || format!("compacted {name}"))?;
    Ok(ExitCode::SUCCESS)
}

fn alter(cli: &Cli, a: &crate::AlterArgs, out: &mut Out) -> CliResult<ExitCode> {
    let change = Alter {
        metric: a.metric.as_deref().map(str::parse).transpose()?,
        scalar: a.scalar.as_deref().map(str::parse).transpose()?,
        connectivity: a.connectivity,
        expansion_add: a.expansion_add,
        expansion_search: a.expansion_search,
    };
    let model = crate::model::given(cli);
    let prefixes = a.query_prefix.is_some() || a.document_prefix.is_some();
    if change == Alter::default() && model.is_none() && !prefixes {
        return input("alter: nothing to change (give --model, --query-prefix, --document-prefix, --metric, --scalar, --connectivity, --expansion-add or --expansion-search)");
    }
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, &a.name)?;
    // The binding is worked out and checked first, written last: a bad
    // setting below writes nothing.
    let binding = if model.is_some() || prefixes {
        let mut binding = match crate::model::load(cli)? {
            Some(m) => {
                coll.check_embedder(&m)?;
                let mut b = m.binding();
                if let Some(old) = coll.model()? {
                    b.query_prefix = old.query_prefix;
                    b.document_prefix = old.document_prefix;
                }
                b
            }
            None => coll.model()?.ok_or_else(|| {
                Failure::Input(format!(
                    "collection {:?} is bound to no model: give --model DIR to bind one with the prefixes",
                    a.name
                ))
            })?,
        };
        if let Some(p) = &a.query_prefix {
            binding.query_prefix = p.clone();
        }
        if let Some(p) = &a.document_prefix {
            binding.document_prefix = p.clone();
        }
        let mut check = coll.config();
        check.model = Some(binding.id.clone());
        check.embedding = Some(binding.clone());
        check.validate()?;
        Some(binding)
    } else {
        None
    };
    if change != Alter::default() {
        coll.alter(&change)?;
    }
    if let Some(binding) = &binding {
        coll.bind_model(binding)?;
    }
    out.result(
        &serde_json::json!({"altered": a.name, "config": coll.config()}),
        || format!("altered {}", a.name),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn flush(cli: &Cli, name: &str, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, name)?;
    coll.flush()?;
    let info = coll.info()?;
    let seq = info.snapshot.as_ref().map(|s| s.applied_seq);
    out.result(
        &serde_json::json!({"flushed": name, "snapshot_seq": seq}),
        || format!("flushed {name}: snapshot at sequence {}", seq.unwrap_or(0)),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn debug_soak_writer(cli: &Cli, a: &crate::soak::SoakArgs) -> CliResult<ExitCode> {
    crate::soak::run(&cli.store_dir(), a)?;
    Ok(ExitCode::SUCCESS)
}

fn embed(cli: &Cli, a: &crate::model::EmbedArgs, out: &mut Out) -> CliResult<ExitCode> {
    crate::model::embed_stdin(cli, a, out)?;
    Ok(ExitCode::SUCCESS)
}

fn reembed(cli: &Cli, a: &crate::model::ReembedArgs, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_write(cli, false)?;
    crate::model::reembed(cli, &store, a, out)?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

fn demo(a: &crate::demo::DemoArgs, out: &mut Out) -> CliResult<ExitCode> {
    crate::demo::run(a, out)?;
    Ok(ExitCode::SUCCESS)
}

fn human_info(info: &quiver::CollectionInfo) -> String {
    let c = &info.config;
    let mut lines = vec![
        format!("name:            {}", info.name),
        format!("records:         {}", info.count),
        format!(
            "config:          dim {} · metric {} · scalar {} · M {} · ef_add {} · ef {} · tokenizer {}",
            c.dimension,
            c.metric,
            c.scalar,
            c.connectivity,
            c.expansion_add,
            c.expansion_search,
            c.tokenizer
        ),
        format!(
            "sequence:        {} (index at {})",
            info.seq, info.applied_seq
        ),
    ];
    match (&c.embedding, &c.model) {
        (Some(b), _) => {
            lines.push(format!("model:           {} from {}", b.id, b.source));
            lines.push(format!(
                "                 {} pooling · {} · {} tokens{}{}",
                b.pooling,
                if b.normalize {
                    "unit vectors"
                } else {
                    "not normalised"
                },
                b.max_tokens,
                if b.query_prefix.is_empty() {
                    String::new()
                } else {
                    format!(" · query prefix {:?}", b.query_prefix)
                },
                if b.document_prefix.is_empty() {
                    String::new()
                } else {
                    format!(" · document prefix {:?}", b.document_prefix)
                },
            ));
        }
        (None, Some(m)) => lines.push(format!(
            "model:           {m} (source unknown: bind it with alter --model)"
        )),
        (None, None) => lines.push("model:           none".into()),
    }
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
    if !info.indexed_fields.is_empty() {
        lines.push(format!(
            "indexed fields:  {}",
            info.indexed_fields.join(", ")
        ));
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    took_us: Option<f64>,
}

impl<'a> SearchLine<'a> {
    /// A result line; with `started`, its wall time since then.
    fn new(r: &'a quiver::SearchResult, started: Option<std::time::Instant>) -> Self {
        SearchLine {
            hits: &r.hits,
            plan: r.plan.name(),
            ef: r.plan.ef(),
            matches: r.plan.matches(),
            took_us: started.map(|t| t.elapsed().as_secs_f64() * 1e6),
        }
    }
}

/// Query texts: one `{"text": ..}` object (or a bare JSON string) per line.
fn read_query_texts(path: &Path) -> CliResult<Vec<String>> {
    let read = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin().lock())
    } else {
        std::fs::read_to_string(path)
    };
    let body = match read {
        Ok(b) => b,
        Err(e) => {
            return input(format!(
                "--query-texts: cannot read {}: {e}",
                path.display()
            ))
        }
    };
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return input(format!("{at}: {e}")),
        };
        match v.get("text").and_then(|t| t.as_str()).or(v.as_str()) {
            Some(t) => out.push(t.to_string()),
            None => return input(format!("{at}: expected {{\"text\": \"...\"}}")),
        }
    }
    Ok(out)
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
    opts.filter = parse_filter(a.filter.as_deref())?;
    // Check what needs no store first, so bad flags fail fast.
    if a.k == 0 || a.k > quiver::MAX_K {
        return input(format!("-k must be 1..={}, got {}", quiver::MAX_K, a.k));
    }
    let fusion = Fusion {
        rrf_k: a.rrf_k,
        vector_weight: a.vector_weight,
        keyword_weight: a.keyword_weight,
        ..Fusion::default()
    };
    let has_vectors = a.vector.is_some() || a.queries.is_some();
    let has_texts = a.text.is_some() || a.query_texts.is_some();
    match a.mode {
        Mode::Vector if has_vectors && has_texts => {
            return input("vector mode takes a vector (--vector/--queries) or a text to embed (--text/--query-texts), not both")
        }
        Mode::Vector if !has_vectors && !has_texts => return input("give --vector, --queries, --text or --query-texts"),
        Mode::Keyword if !has_texts => return input("--mode keyword needs --text or --query-texts"),
        Mode::Keyword if has_vectors => return input("--mode keyword takes no --vector/--queries"),
        Mode::Hybrid if !has_texts => {
            return input("--mode hybrid needs a text (--text/--query-texts), and a vector or --model to embed the text")
        }
        _ => {}
    }
    let texts = match (&a.text, &a.query_texts) {
        (Some(t), _) => vec![t.clone()],
        (None, Some(p)) => read_query_texts(p)?,
        (None, None) => Vec::new(),
    };
    let streamed = a.queries.as_deref() == Some(Path::new("-"));
    if streamed && a.mode != Mode::Vector {
        return input("--queries - (vectors from stdin) works in vector mode only");
    }
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let dim = coll.config().dimension;
    if streamed {
        return search_stdin(&coll, dim, &opts, a.timings, out);
    }
    let vectors: Vec<Vec<f32>> = match (&a.vector, &a.queries) {
        (Some(v), _) => vec![parse_vector("--vector", v)?],
        (None, Some(path)) => read_f32_rows(path, dim, "--queries")?
            .chunks_exact(dim)
            .map(<[f32]>::to_vec)
            .collect(),
        // Text queries in vector or hybrid mode: embed them with the model.
        (None, None) if a.mode != Mode::Keyword => {
            if let Some(model) = crate::model::ready(cli, &coll, "searching by text")? {
                if coll.count()? > 0 {
                    crate::model::unbound_warning(&coll, &*model);
                }
            }
            crate::model::in_batches(&texts, |t| coll.embed_queries(t))?
        }
        (None, None) => Vec::new(),
    };
    if a.mode == Mode::Hybrid && vectors.len() != texts.len() {
        return input(format!(
            "--mode hybrid: {} query vectors but {} query texts (they pair up line by line)",
            vectors.len(),
            texts.len()
        ));
    }
    let queries = vectors.len().max(texts.len());
    let mut warned = false;
    for i in 0..queries {
        let started = std::time::Instant::now();
        let r = match a.mode {
            Mode::Keyword => coll.search_keyword(&texts[i], &opts)?,
            Mode::Hybrid => coll.search_hybrid(&vectors[i], &texts[i], &opts, &fusion)?,
            Mode::Vector => coll.search(&vectors[i], &opts)?,
        };
        if r.hits.is_empty() && !warned {
            warned = true;
            crate::open::warn_missing_fields(&coll, opts.filter.as_ref());
        }
        out.json(&SearchLine::new(&r, a.timings.then_some(started)))?;
    }
    Ok(())
}

/// `--queries -`: read one row of `dim` f32s from stdin at a time and
/// answer it at once, flushing each line, until stdin ends. A row cut
/// short by the end of stdin is bad input (exit 2), after the answers
/// to the whole rows before it.
fn search_stdin(
    coll: &quiver::Collection,
    dim: usize,
    opts: &SearchOptions,
    timings: bool,
    out: &mut Out,
) -> CliResult<()> {
    use std::io::Read;
    let mut stdin = std::io::stdin().lock();
    let mut row = vec![0u8; dim * 4];
    let mut rows = 0u64;
    loop {
        let mut got = 0;
        while got < row.len() {
            match stdin.read(&mut row[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return input(format!("--queries -: cannot read stdin: {e}")),
            }
        }
        if got == 0 {
            return Ok(());
        }
        if got < row.len() {
            return input(format!(
                "--queries -: stdin ended {got} bytes into row {}, not a whole {dim}-d f32 row ({} bytes)",
                rows + 1,
                row.len()
            ));
        }
        let v = le_f32s(&row);
        let started = std::time::Instant::now();
        let r = coll.search(&v, opts)?;
        out.json(&SearchLine::new(&r, timings.then_some(started)))?;
        out.flush()?;
        rows += 1;
    }
}
