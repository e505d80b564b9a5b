//! (feature milvus) A collection onto Milvus and back: `quiver sync`
//! (create the remote collection, copy it whole, then apply the change
//! feed; `--follow` keeps applying it), `sync --verify` (compare both
//! sides) and `import --from milvus://` (a Milvus collection into a local
//! one). The Milvus client is in `milvus`.
//!
//! The checkpoint is a change-feed consumer named after the target, in
//! the local store: it is acknowledged only after Milvus accepted the
//! writes up to it, so a sync killed at any moment resends at most what it
//! was sending (upserts by primary key and deletes by id are idempotent).
//! While a whole copy runs, a second consumer (`… (copying)`) holds the
//! tombstones; the target's own consumer exists only once a copy is whole.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use quiver::{Change, CollectionConfig, Metric, Record};
use serde_json::{json, Value};

use crate::milvus::{
    row_id, to_record, token, Remote, Target, ID, MAX_DIM, MAX_TEXT, METADATA, PRESENT, QUERY_PAGE,
    TEXT, VECTOR,
};
use crate::open::{open_read, open_write};
use crate::output::{input, CliResult, Failure, Out};
use crate::{Cli, SyncArgs};

/// What a record needs to fit Milvus's schema.
fn check_fits(r: &Record) -> CliResult<()> {
    if let Some(t) = &r.text {
        if t.len() > MAX_TEXT {
            return input(format!(
                "record {:?}: its text is {} bytes; a Milvus VarChar holds at most {MAX_TEXT}",
                r.id,
                t.len()
            ));
        }
    }
    Ok(())
}

/// Checks of the local collection before anything is sent.
fn check_config(name: &str, config: &CollectionConfig) -> CliResult<()> {
    if !matches!(config.metric, Metric::Cos | Metric::Ip | Metric::L2) {
        return input(format!(
            "collection {name} uses metric {}; sync to Milvus supports cos, ip and l2",
            config.metric
        ));
    }
    if config.dimension > MAX_DIM {
        return input(format!(
            "collection {name} has dimension {}; Milvus takes at most {MAX_DIM}",
            config.dimension
        ));
    }
    Ok(())
}

/// Make sure the remote collection exists and is ours; true when it was
/// just created (or holds nothing of ours), so a whole copy is needed.
fn ensure_remote(remote: &mut Remote, local: &str, config: &CollectionConfig) -> CliResult<bool> {
    if !remote.retry("has_collection", |r| r.exists())? {
        remote.retry("create collection", |r| r.create(local, config))?;
        return Ok(true);
    }
    let (_, dim, fields) = remote.retry("describe collection", |r| r.describe())?;
    let target = &remote.target.collection;
    if dim != Some(config.dimension as u32) {
        return input(format!(
            "Milvus collection {target} has {} where {local} has dimension {}: sync to another collection",
            dim.map_or("no vector field".into(), |d| format!("dimension {d}")),
            config.dimension
        ));
    }
    for f in [ID, TEXT, METADATA, PRESENT] {
        if !fields.iter().any(|g| g == f) {
            return input(format!(
                "Milvus collection {target} has no field {f:?}: it was not made by quiver sync; sync to another collection"
            ));
        }
    }
    remote.retry("load collection", |r| r.load())?;
    Ok(false)
}

/// `quiver sync`.
pub(crate) fn sync(cli: &Cli, a: &SyncArgs, out: &mut Out) -> CliResult<ExitCode> {
    let target = Target::parse(&a.to)?;
    let token = token(a.token_file.as_ref())?;
    if a.verify {
        return verify(cli, a, target, token, out);
    }
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let config = coll.config();
    check_config(&a.name, &config)?;
    let retry_for = (!a.follow).then(|| Duration::from_secs(a.retry_for));
    let mut remote = Remote::new(target.clone(), token, retry_for)?;
    let consumer = target.consumer();
    let copying = format!("{consumer} (copying)");
    let batch = a.batch as usize;
    let mut report = json!({"copied": 0, "upserted": 0, "deleted": 0});
    let created = ensure_remote(&mut remote, &a.name, &config)?;
    let mut at = match coll.consumer(&consumer)? {
        Some(seq) if !created && !a.full => Some(seq),
        _ => None,
    };
    if at.is_some() && coll.consumer(&copying)?.is_some() {
        // Left by a --full copy cut short: it would hold tombstones forever.
        coll.remove_consumer(&copying)?;
    }
    loop {
        let seq = match at {
            Some(seq) => seq,
            None => {
                // A whole copy: hold the tombstones from here, copy every
                // record, drop the remote's records we do not have.
                let start = coll.seq()?;
                coll.register_consumer(&copying, start)?;
                // Until this copy is whole, the target has no checkpoint:
                // a copy cut short starts again, never resumes from one.
                coll.remove_consumer(&consumer)?;
                let copied = copy_all(&coll, &mut remote, batch)?;
                let extra = drop_extra(&coll, &mut remote, batch)?;
                coll.register_consumer(&consumer, start)?;
                coll.remove_consumer(&copying)?;
                report["copied"] = copied.into();
                report["removed_remote_only"] = extra.into();
                eprintln!(
                    "quiver: copied {copied} records of {} to {} (sequence {start})",
                    a.name,
                    target.consumer()
                );
                start
            }
        };
        match apply_tail(&coll, &mut remote, &consumer, seq, batch) {
            Ok((seq, upserted, deleted)) => {
                at = Some(seq);
                let add =
                    |v: &mut Value, n: usize| *v = (v.as_u64().unwrap_or(0) + n as u64).into();
                add(&mut report["upserted"], upserted);
                add(&mut report["deleted"], deleted);
                report["seq"] = seq.into();
            }
            // Fell behind pruning (its consumer was removed or moved):
            // copy whole again.
            Err(Failure::Input(m)) if m.contains("not all kept") => {
                eprintln!("quiver: {m}; copying whole again");
                at = None;
                continue;
            }
            Err(e) => return Err(e),
        }
        if !a.follow {
            // Sealed, so Milvus builds its index over what was sent.
            remote.retry("flush", |r| r.flush())?;
            break;
        }
        std::thread::sleep(Duration::from_millis(a.poll_ms));
    }
    out.result(&report, || {
        format!(
            "{} is in sync with {} at sequence {}",
            a.name,
            target.consumer(),
            report["seq"]
        )
    })?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Every local record to the remote, in id order; returns how many.
fn copy_all(coll: &quiver::Collection, remote: &mut Remote, batch: usize) -> CliResult<u64> {
    let mut after: Option<String> = None;
    let mut copied = 0u64;
    loop {
        let page = coll.scan(None, after.as_deref(), batch)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for r in &page {
            check_fits(r)?;
        }
        remote.retry("upsert", |rm| rm.upsert(&page))?;
        copied += page.len() as u64;
        if page.len() < batch {
            break;
        }
    }
    Ok(copied)
}

/// Delete the remote records the local collection does not have; returns
/// how many.
fn drop_extra(coll: &quiver::Collection, remote: &mut Remote, batch: usize) -> CliResult<u64> {
    let mut after: Option<String> = None;
    let mut extra = Vec::new();
    loop {
        let rows = remote.retry("query ids", |r| r.page(after.as_deref(), &[ID], QUERY_PAGE))?;
        let Some(last) = rows.last() else { break };
        after = Some(row_id(last).to_string());
        for row in &rows {
            let id = row_id(row);
            if coll.get(id)?.is_none() {
                extra.push(id.to_string());
            }
        }
        if (rows.len() as i64) < QUERY_PAGE {
            break;
        }
    }
    for chunk in extra.chunks(batch) {
        remote.retry("delete", |r| r.delete(chunk))?;
    }
    Ok(extra.len() as u64)
}

/// Apply the feed after `since` in batches, acknowledging each finished
/// sequence once Milvus took it; returns the sequence reached and the
/// upserts and deletes sent.
fn apply_tail(
    coll: &quiver::Collection,
    remote: &mut Remote,
    consumer: &str,
    since: u64,
    batch: usize,
) -> CliResult<(u64, usize, usize)> {
    let changes = coll.changes(since)?;
    let until = changes.until();
    let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
    let (mut sent_up, mut sent_del) = (0, 0);
    // The sequence of the last change read: every change before it is
    // in the pending batches or sent.
    let mut current = since;
    let mut flush = |remote: &mut Remote,
                     upserts: &mut Vec<Record>,
                     deletes: &mut Vec<String>,
                     done: u64|
     -> CliResult<()> {
        // One change can be larger than a batch: send it in batches (the
        // acknowledgement still waits for the change's end).
        for chunk in upserts.chunks(batch) {
            remote.retry("upsert", |r| r.upsert(chunk))?;
        }
        for chunk in deletes.chunks(batch) {
            remote.retry("delete", |r| r.delete(chunk))?;
        }
        sent_up += upserts.len();
        sent_del += deletes.len();
        upserts.clear();
        deletes.clear();
        if done > since {
            coll.acknowledge(consumer, done)?;
        }
        Ok(())
    };
    for change in changes {
        let (seq, change) = change?;
        if upserts.len() + deletes.len() >= batch && seq > current {
            // Everything up to `current` is in hand, and nothing of `seq`.
            flush(remote, &mut upserts, &mut deletes, current)?;
        }
        current = seq;
        match change {
            Change::Upsert(r) => {
                check_fits(&r)?;
                upserts.push(r);
            }
            Change::Delete(id) => deletes.push(id),
        }
    }
    let end = until.max(since);
    if !upserts.is_empty() || !deletes.is_empty() || end > since {
        flush(remote, &mut upserts, &mut deletes, end)?;
    }
    Ok((end, sent_up, sent_del))
}

/// `quiver sync --verify`: counts, the id sets (a digest each, and the
/// first differences), and a sample of records compared field by field.
fn verify(
    cli: &Cli,
    a: &SyncArgs,
    target: Target,
    token: Option<String>,
    out: &mut Out,
) -> CliResult<ExitCode> {
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let mut remote = Remote::new(
        target.clone(),
        token,
        Some(Duration::from_secs(a.retry_for)),
    )?;
    if !remote.retry("has_collection", |r| r.exists())? {
        return input(format!(
            "Milvus at {} has no collection {}",
            target.uri(),
            target.collection
        ));
    }
    let mut problems: Vec<String> = Vec::new();
    let local_count = coll.count()?;
    let remote_count = remote.retry("count", |r| r.count())?;
    if local_count != remote_count {
        problems.push(format!(
            "count: {local_count} here, {remote_count} in Milvus"
        ));
    }
    // The id sets, both in id order.
    let mut local = BTreeSet::new();
    coll.for_each_record(None, |r| {
        local.insert(r.id);
        Ok(())
    })?;
    let mut theirs = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let rows = remote.retry("query ids", |r| r.page(after.as_deref(), &[ID], QUERY_PAGE))?;
        let Some(last) = rows.last() else { break };
        after = Some(row_id(last).to_string());
        theirs.extend(rows.iter().map(|r| row_id(r).to_string()));
        if (rows.len() as i64) < QUERY_PAGE {
            break;
        }
    }
    // Equal sets have equal digests (both computed here, in one order).
    let digest = |ids: &BTreeSet<String>| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ids.len().hash(&mut h);
        for id in ids {
            id.hash(&mut h);
        }
        format!("{:016x}", h.finish())
    };
    let (ours_digest, their_digest) = (digest(&local), digest(&theirs));
    let missing: Vec<&String> = local.difference(&theirs).collect();
    let extra: Vec<&String> = theirs.difference(&local).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} ids not in Milvus, such as {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "{} ids only in Milvus, such as {:?}",
            extra.len(),
            &extra[..extra.len().min(5)]
        ));
    }
    // A sample spread over the id order, compared field by field.
    let shared: Vec<&String> = local.intersection(&theirs).collect();
    let step = (shared.len() / a.sample.max(1)).max(1);
    let sample: Vec<String> = shared
        .iter()
        .step_by(step)
        .take(a.sample)
        .map(|s| s.to_string())
        .collect();
    let mut compared = 0;
    for chunk in sample.chunks(100) {
        let got = remote.retry("query records", |r| r.records(chunk))?;
        let by_id: HashMap<&str, &Record> = got.iter().map(|r| (r.id.as_str(), r)).collect();
        for id in chunk {
            let Some(mine) = coll.get(id)? else { continue };
            compared += 1;
            match by_id.get(id.as_str()) {
                None => problems.push(format!("record {id:?}: not returned by Milvus")),
                Some(t) => {
                    if t.vector != mine.vector {
                        problems.push(format!("record {id:?}: vectors differ"));
                    }
                    if t.text != mine.text {
                        problems.push(format!("record {id:?}: texts differ"));
                    }
                    if t.metadata != mine.metadata {
                        problems.push(format!("record {id:?}: metadata differ"));
                    }
                }
            }
        }
    }
    let report = json!({
        "local": {"count": local_count, "ids_digest": ours_digest},
        "milvus": {"count": remote_count, "ids_digest": their_digest},
        "compared": compared,
        "differences": problems,
    });
    out.result(&report, || {
        if problems.is_empty() {
            format!(
                "{} and {} agree ({local_count} records, {compared} compared)",
                a.name,
                target.consumer()
            )
        } else {
            format!(
                "{} differences:\n  {}",
                problems.len(),
                problems.join("\n  ")
            )
        }
    })?;
    out.flush()?;
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `quiver import NAME --from milvus://…`: every row of the Milvus
/// collection into the local one (made with the remote's dimension and
/// metric when it does not exist), a batch per transaction, with progress.
pub(crate) fn import_from(
    cli: &Cli,
    name: &str,
    from: &str,
    token_file: Option<&PathBuf>,
    batch: usize,
    out: &mut Out,
) -> CliResult<ExitCode> {
    let target = Target::parse(from)?;
    let token = token(token_file)?;
    let mut remote = Remote::new(target.clone(), token, Some(Duration::from_secs(300)))?;
    if !remote.retry("has_collection", |r| r.exists())? {
        return input(format!(
            "Milvus at {} has no collection {}",
            target.uri(),
            target.collection
        ));
    }
    let (description, dim, fields) = remote.retry("describe collection", |r| r.describe())?;
    let Some(dim) = dim else {
        return input(format!(
            "Milvus collection {} has no float vector field {VECTOR:?}",
            target.collection
        ));
    };
    for f in [ID] {
        if !fields.iter().any(|g| g == f) {
            return input(format!(
                "Milvus collection {} has no field {f:?}",
                target.collection
            ));
        }
    }
    let total = remote.retry("count", |r| r.count())?;
    let store = open_write(cli, true)?;
    let coll = match store.collection(name)? {
        Some(c) => c,
        None => {
            let mut config = CollectionConfig::new(dim as usize);
            // The metric the sync wrote into the description, else cosine.
            config.metric = ["metric ip", "metric l2", "metric cos"]
                .iter()
                .find(|m| description.contains(*m))
                .and_then(|m| m.trim_start_matches("metric ").parse().ok())
                .unwrap_or(Metric::Cos);
            config.scalar = quiver::Scalar::default_for(config.metric);
            store.create_collection(name, &config)?
        }
    };
    if coll.config().dimension != dim as usize {
        return input(format!(
            "collection {name} has dimension {}; Milvus collection {} has {dim}",
            coll.config().dimension,
            target.collection
        ));
    }
    let bar = crate::output::progress_bar(total, "importing");
    let page = crate::milvus::record_page(dim as usize);
    let mut after: Option<String> = None;
    let mut imported = 0u64;
    let mut bulk = coll.bulk()?;
    let mut pending: Vec<Record> = Vec::new();
    loop {
        let rows = remote.retry("query", |r| {
            r.page(
                after.as_deref(),
                &[ID, VECTOR, TEXT, METADATA, PRESENT],
                page,
            )
            .or_else(|e| {
                // A collection not made by quiver sync has no "present".
                if e.message.contains(PRESENT) {
                    r.page(after.as_deref(), &[ID, VECTOR, TEXT, METADATA], page)
                } else {
                    Err(e)
                }
            })
        })?;
        let Some(last) = rows.last() else { break };
        after = Some(row_id(last).to_string());
        for row in &rows {
            pending.push(to_record(row).map_err(|e| Failure::Internal(e.message))?);
            if pending.len() >= batch {
                bulk.upsert(&pending)?;
                imported += pending.len() as u64;
                pending.clear();
                bar.set_position(imported);
            }
        }
        if (rows.len() as i64) < page {
            break;
        }
    }
    if !pending.is_empty() {
        bulk.upsert(&pending)?;
        imported += pending.len() as u64;
    }
    bulk.finish()?;
    bar.finish_and_clear();
    out.result(
        &json!({"imported": imported, "from": target.consumer()}),
        || {
            format!(
                "imported {imported} records from {} into {name}",
                target.consumer()
            )
        },
    )?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
