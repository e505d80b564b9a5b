//! The change feed on the command line: `changes` (a collection's changes
//! after a sequence number as JSON Lines, which `apply` replays, and with
//! `--follow` the changes other processes commit) and `consumers`
//! (register, acknowledge, list and remove the named consumers that keep
//! tombstones from being pruned).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use quiver::{Change, Collection};
use serde_json::{json, Value};

use crate::open::{open_read, open_write};
use crate::output::{input, table, CliResult, Out};
use crate::Cli;

#[derive(Args, Debug)]
pub(crate) struct ChangesArgs {
    /// The collection.
    pub name: String,
    /// Print the changes committed after this sequence number (0: every
    /// record).
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Keep printing changes as they are committed, by any process, until
    /// interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Start after the sequence this registered consumer last acknowledged
    /// (`consumers --ack`), instead of --since.
    #[arg(long, value_name = "CONSUMER", conflicts_with = "since")]
    pub consumer: Option<String>,
    /// With --follow, how often to look for new changes, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,
}

#[derive(Args, Debug)]
pub(crate) struct ConsumersArgs {
    /// The collection.
    pub name: String,
    /// Register a consumer as having applied the changes up to --seq
    /// (default 0): snapshots keep every tombstone after that for it.
    #[arg(long, value_name = "CONSUMER", conflicts_with_all = ["ack", "remove"])]
    pub register: Option<String>,
    /// Acknowledge that a consumer applied the changes up to --seq, which
    /// lets snapshots prune the tombstones up to there.
    #[arg(
        long,
        value_name = "CONSUMER",
        conflicts_with = "remove",
        requires = "seq"
    )]
    pub ack: Option<String>,
    /// Forget a consumer, so that snapshots may prune the tombstones it
    /// has not applied.
    #[arg(long, value_name = "CONSUMER")]
    pub remove: Option<String>,
    /// The sequence for --register or --ack (a line's "seq" from `changes`).
    #[arg(long)]
    pub seq: Option<u64>,
}

/// A change as one JSON line: `{"seq", "op": "upsert", "id", "vector",
/// "text"?, "metadata"?}` or `{"seq", "op": "delete", "id"}`, the
/// operations `apply` reads. Each f32 is written as the f64 of the same
/// value, which reads back to the same bits.
pub(crate) fn change_line(seq: u64, change: Change) -> Value {
    match change {
        Change::Upsert(r) => {
            let mut line = json!({"seq": seq, "op": "upsert", "id": r.id});
            line["vector"] = crate::output::exact_vector(&r.vector);
            if let Some(t) = r.text {
                line["text"] = t.into();
            }
            if let Some(m) = r.metadata {
                line["metadata"] = m;
            }
            if let Some(at) = r.expires_at {
                line["expires_at"] = quiver::clock::format_rfc3339(at).into();
            }
            line
        }
        Change::Delete(id) => json!({"seq": seq, "op": "delete", "id": id}),
    }
}

/// Print the changes after `since`; returns the sequence printed up to.
fn print_changes(coll: &Collection, since: u64, out: &mut Out) -> CliResult<u64> {
    let changes = coll.changes(since)?;
    let until = changes.until();
    for change in changes {
        let (seq, change) = change?;
        out.json(&change_line(seq, change))?;
    }
    out.flush()?;
    Ok(until.max(since))
}

/// `quiver changes`.
pub(crate) fn changes(cli: &Cli, a: &ChangesArgs, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let since = match &a.consumer {
        Some(name) => match coll.consumer(name)? {
            Some(seq) => seq,
            None => {
                return input(format!(
                    "collection {} has no consumer {name:?} (register it: quiver consumers {} --register {name})",
                    a.name, a.name
                ))
            }
        },
        None => a.since,
    };
    let mut at = print_changes(&coll, since, out)?;
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Until interrupted, or until the reader goes away (a broken pipe).
    loop {
        std::thread::sleep(Duration::from_millis(a.poll_ms));
        at = print_changes(&coll, at, out)?;
    }
}

/// `quiver consumers`.
pub(crate) fn consumers(cli: &Cli, a: &ConsumersArgs, out: &mut Out) -> CliResult<ExitCode> {
    if a.seq.is_some() && a.register.is_none() && a.ack.is_none() {
        return input("--seq goes with --register or --ack");
    }
    if a.register.is_some() || a.ack.is_some() || a.remove.is_some() {
        let store = open_write(cli, false)?;
        let coll = crate::open::collection(&store, &a.name)?;
        if let Some(name) = &a.register {
            let seq = a.seq.unwrap_or(0);
            coll.register_consumer(name, seq)?;
            out.result(&json!({"registered": name, "seq": seq}), || {
                format!("consumer {name:?} of {} is at sequence {seq}", a.name)
            })?;
        } else if let Some(name) = &a.ack {
            let seq = a.seq.expect("clap requires --seq with --ack");
            coll.acknowledge(name, seq)?;
            let now = coll.consumer(name)?.unwrap_or(seq);
            out.result(&json!({"acknowledged": name, "seq": now}), || {
                format!("consumer {name:?} of {} is at sequence {now}", a.name)
            })?;
        } else if let Some(name) = &a.remove {
            let removed = coll.remove_consumer(name)?;
            out.result(&json!({"removed": removed, "consumer": name}), || {
                if removed {
                    format!("removed consumer {name:?} of {}", a.name)
                } else {
                    format!("{} has no consumer {name:?}", a.name)
                }
            })?;
        }
        out.flush()?;
        store.close()?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let all = coll.consumers()?;
    let seq = coll.seq()?;
    if out.human {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.seq.to_string(),
                    (seq - c.seq.min(seq)).to_string(),
                ]
            })
            .collect();
        out.line(&table(&["consumer", "seq", "behind"], &rows))?;
    } else {
        for c in &all {
            out.json(
                &json!({"consumer": c.name, "seq": c.seq, "behind": seq - c.seq.min(seq),
                "updated_at": c.updated_at}),
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
