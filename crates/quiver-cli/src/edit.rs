//! `update` (some fields of a record, or a merge into every match) and
//! `apply` (a file of operations as one transaction).

use std::io::Read;
use std::process::ExitCode;

use clap::Args;
use quiver::{jsonl, Collection, Filter, Record, Update};
use serde_json::{json, Map, Value};

use crate::open::{open_write, parse_filter};
use crate::output::{input, CliResult, Failure, Out};
use crate::vectors::parse_vector;
use crate::Cli;

#[derive(Args, Debug)]
pub(crate) struct UpdateArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: crate::ModelArg,
    /// The record to change (it must exist).
    #[arg(long, required_unless_present = "filter", conflicts_with = "filter")]
    pub id: Option<String>,
    /// Change every record matching this filter (with --merge).
    #[arg(long)]
    pub filter: Option<String>,
    /// New metadata (a JSON object), replacing the record's.
    #[arg(long)]
    pub metadata: Option<String>,
    /// Merge instead of replace: --merge JSON, or --metadata JSON --merge
    /// (a JSON merge patch: each key given replaces that key, objects
    /// merge, null removes a key).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub merge: Option<String>,
    /// New text (re-embedded with the collection's model when it has one
    /// and no --vector is given).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "filter")]
    pub text: Option<String>,
    /// New vector, a JSON array.
    #[arg(long, conflicts_with = "filter")]
    pub vector: Option<String>,
    /// A new expiry.
    #[command(flatten)]
    pub expiry: crate::ExpiryArg,
    /// Keep the record for good (drop its expiry).
    #[arg(long, conflicts_with_all = ["ttl", "expires_at", "filter"])]
    pub no_expiry: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ApplyArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: crate::ModelArg,
    /// JSON Lines of operations, or - for stdin: {"op": "upsert", ..record..},
    /// {"op": "delete", "ids": [..]}, {"op": "delete", "id": ".."} or
    /// {"op": "delete", "filter": ".."},
    /// {"op": "update", "id": .., "vector"?, "text"?, "metadata"?, "merge"?: bool},
    /// {"op": "update", "filter": "..", "metadata": {..}, "merge": true}.
    /// A "seq" field (as `changes` writes) is ignored.
    pub file: String,
}

fn object(what: &str, text: &str) -> CliResult<Value> {
    let v: Value =
        serde_json::from_str(text).or_else(|e| input(format!("{what} is not valid JSON: {e}")))?;
    if !v.is_object() {
        return input(format!("{what} must be a JSON object"));
    }
    Ok(v)
}

/// `quiver update`.
pub(crate) fn update(cli: &Cli, a: &UpdateArgs, out: &mut Out) -> CliResult<ExitCode> {
    let filter = parse_filter(a.filter.as_deref())?;
    let (metadata, merge) = match (&a.metadata, a.merge.as_deref()) {
        (Some(_), Some(m)) if !m.is_empty() => {
            return input("give --metadata JSON --merge, or --merge JSON, not both")
        }
        (Some(m), merge) => (Some(object("--metadata", m)?), merge.is_some()),
        (None, Some("")) => return input("--merge needs a JSON object (or --metadata JSON)"),
        (None, Some(m)) => (Some(object("--merge", m)?), true),
        (None, None) => (None, false),
    };
    let vector = a
        .vector
        .as_deref()
        .map(|v| parse_vector("--vector", v))
        .transpose()?;
    let expiry = match a.expiry.resolve()? {
        Some(at) => Some(Some(at)),
        None if a.no_expiry => Some(None),
        None => None,
    };
    if expiry.is_some() && filter.is_some() {
        return input("--ttl and --expires-at change one record: give --id");
    }
    if metadata.is_none() && vector.is_none() && a.text.is_none() && expiry.is_none() {
        return input(
            "nothing to change: give --metadata, --merge, --text, --vector, --ttl, --expires-at or --no-expiry",
        );
    }
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let report = match (&a.id, &filter) {
        (_, Some(f)) => {
            let Some(patch) = metadata.filter(|_| merge) else {
                return input("--filter updates merge metadata: give --merge JSON");
            };
            let report = coll.write(|b| b.merge_where(f, &patch).map(drop))?;
            if report.updated == 0 {
                crate::open::warn_missing_fields(&coll, Some(f));
            }
            report
        }
        (Some(id), None) => {
            let mut u = Update::new(id.clone());
            u.vector = vector;
            u.text = a.text.clone();
            u.metadata = metadata;
            u.merge = merge;
            u.expires_at = expiry;
            embed_missing(cli, &coll, std::slice::from_mut(&mut u))?;
            coll.update(u)?
        }
        (None, None) => return input("give --id or --filter"),
    };
    out.result(&report, || {
        format!("updated {} records of {}", report.updated, a.name)
    })?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

/// One parsed line of an `apply` file.
enum Op {
    Upsert(Record),
    Delete(Vec<String>),
    DeleteWhere(Filter),
    Update(Update),
    MergeWhere(Filter, Value),
}

fn parse_op(line: &str) -> Result<Option<(Op, bool)>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut m) = v else {
        return Err("expected a JSON object".into());
    };
    let op = match m.remove("op") {
        Some(Value::String(s)) => s,
        _ => return Err("expected \"op\": \"upsert\", \"delete\" or \"update\"".into()),
    };
    // A line of `quiver changes` carries the sequence that made it.
    match m.remove("seq") {
        None => {}
        Some(Value::Number(n)) if n.is_u64() => {}
        Some(_) => return Err("\"seq\" must be a non-negative integer".into()),
    }
    let unknown = |m: &Map<String, Value>, allowed: &[&str]| -> Result<(), String> {
        match m.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown field {k:?} in a {op:?} operation")),
            None => Ok(()),
        }
    };
    let filter = |m: &mut Map<String, Value>| -> Result<Option<Filter>, String> {
        match m.remove("filter") {
            None => Ok(None),
            Some(Value::String(f)) => f.parse().map(Some).map_err(|e| format!("{e}")),
            Some(_) => Err("\"filter\" must be a string".into()),
        }
    };
    let out = match op.as_str() {
        "upsert" => {
            let line = jsonl::parse_line(Value::Object(m).to_string().as_bytes())?
                .ok_or("an upsert needs a record")?;
            let needs_vector = line.vector.is_none();
            let mut r = Record::new(line.id, line.vector.unwrap_or_default());
            r.text = line.text;
            r.metadata = line.metadata;
            r.expires_at = line.expires_at;
            if needs_vector && r.text.is_none() {
                return Err("an upsert needs \"vector\", or \"text\" with a model".into());
            }
            (Op::Upsert(r), needs_vector)
        }
        "delete" => {
            unknown(&m, &["id", "ids", "filter"])?;
            let one = match m.remove("id") {
                None => None,
                Some(Value::String(id)) => Some(Value::from(vec![id])),
                Some(_) => return Err("\"id\" must be a string".into()),
            };
            let ids = match (one, m.remove("ids")) {
                (Some(_), Some(_)) => {
                    return Err("a delete takes \"id\" or \"ids\", not both".into())
                }
                (one, ids) => one.or(ids),
            };
            match (ids, filter(&mut m)?) {
                (Some(ids), None) => {
                    let ids: Vec<String> = serde_json::from_value(ids)
                        .map_err(|_| "\"ids\" must be an array of strings".to_string())?;
                    (Op::Delete(ids), false)
                }
                (None, Some(f)) => (Op::DeleteWhere(f), false),
                _ => return Err("a delete takes \"id\", \"ids\" or \"filter\", one of them".into()),
            }
        }
        "update" => {
            unknown(&m, &["id", "filter", "vector", "text", "metadata", "merge"])?;
            let merge = match m.remove("merge") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => return Err("\"merge\" must be true or false".into()),
            };
            let metadata = m.remove("metadata");
            if let Some(f) = filter(&mut m)? {
                if m.contains_key("id") || m.contains_key("vector") || m.contains_key("text") {
                    return Err("an update by filter changes metadata only".into());
                }
                match metadata {
                    Some(patch) if merge => (Op::MergeWhere(f, patch), false),
                    _ => {
                        return Err(
                            "an update by filter merges: give \"metadata\" and \"merge\": true"
                                .into(),
                        )
                    }
                }
            } else {
                let id = match m.remove("id") {
                    Some(Value::String(id)) => id,
                    _ => return Err("an update needs \"id\" (a string) or \"filter\"".into()),
                };
                let mut u = Update::new(id);
                u.vector = match m.remove("vector") {
                    None => None,
                    Some(v) => Some(
                        serde_json::from_value::<Vec<f64>>(v)
                            .map_err(|_| "\"vector\" must be an array of numbers".to_string())?
                            .into_iter()
                            .map(|x| x as f32)
                            .collect(),
                    ),
                };
                u.text = match m.remove("text") {
                    None => None,
                    Some(Value::String(t)) => Some(t),
                    Some(_) => return Err("\"text\" must be a string".into()),
                };
                u.metadata = metadata;
                u.merge = merge;
                if u.vector.is_none() && u.text.is_none() && u.metadata.is_none() {
                    return Err("an update changes \"vector\", \"text\" or \"metadata\"".into());
                }
                let needs = u.text.is_some() && u.vector.is_none();
                (Op::Update(u), needs)
            }
        }
        other => return Err(format!("unknown op {other:?} (use upsert, delete, update)")),
    };
    Ok(Some(out))
}

/// Give updates with a new text and no vector their vector, from the
/// collection's model, when it has one (without one, the text alone is
/// the change).
fn embed_missing(cli: &Cli, coll: &Collection, updates: &mut [Update]) -> CliResult<()> {
    if coll.config().model.is_none()
        || !updates
            .iter()
            .any(|u| u.text.is_some() && u.vector.is_none())
    {
        return Ok(());
    }
    let unbound = crate::model::ready(cli, coll, "a new text")?;
    if let Some(model) = unbound {
        // An update changes a record that exists: never a first vector.
        crate::model::unbound_warning(coll, &*model);
    }
    for u in updates
        .iter_mut()
        .filter(|u| u.text.is_some() && u.vector.is_none())
    {
        let text = u.text.clone().unwrap_or_default();
        u.vector = Some(coll.embed_documents(&[text.as_str()])?.remove(0));
    }
    Ok(())
}

/// `quiver apply`.
pub(crate) fn apply(cli: &Cli, a: &ApplyArgs, out: &mut Out) -> CliResult<ExitCode> {
    let mut text = String::new();
    if a.file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .or_else(|e| input(format!("stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(&a.file).or_else(|e| input(format!("{}: {e}", a.file)))?;
    }
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_op(line) {
            Ok(Some(op)) => ops.push((i + 1, op)),
            Ok(None) => {}
            Err(e) => return input(format!("{}:{}: {e}", a.file, i + 1)),
        }
    }
    let store = open_write(cli, false)?;
    let coll = crate::open::collection(&store, &a.name)?;
    // Texts without vectors are embedded before anything is written (an
    // update's new text alone is a change where no model is bound).
    if coll.config().model.is_none() {
        for (_, (op, needs)) in ops.iter_mut() {
            if matches!(op, Op::Update(_)) {
                *needs = false;
            }
        }
    }
    let mut unbound = None;
    if ops.iter().any(|(_, (_, needs))| *needs) {
        unbound = crate::model::ready(cli, &coll, "an operation with text and no vector")?;
        let at = |line: usize, e: quiver::Error| format!("{}:{line}: {e}", a.file);
        for (line, (op, needs)) in ops.iter_mut().filter(|(_, (_, n))| *n) {
            let text = match op {
                Op::Upsert(r) => r.text.as_deref(),
                Op::Update(u) => u.text.as_deref(),
                _ => None,
            };
            let embedded = coll
                .embed_documents(&[text.unwrap_or("")])
                .map_err(|e| Failure::Input(at(*line, e)))?
                .remove(0);
            match op {
                Op::Upsert(r) => r.vector = embedded,
                Op::Update(u) => u.vector = Some(embedded),
                _ => {}
            }
            *needs = false;
        }
    }
    let at = |line: usize, e: quiver::Error| -> quiver::Error {
        if e.is_bad_input() {
            quiver::Error::InvalidArgument {
                reason: format!("{}:{line}: {e}", a.file),
            }
        } else {
            e
        }
    };
    let was_empty = unbound.is_some() && coll.count()? == 0;
    let report = coll.write(|b| {
        for (line, (op, _)) in &ops {
            let done = match op {
                Op::Upsert(r) => b.upsert(std::slice::from_ref(r)).map(drop),
                Op::Delete(ids) => b.delete(ids).map(drop),
                Op::DeleteWhere(f) => b.delete_where(f).map(drop),
                Op::Update(u) => b.update(u.clone()).map(drop),
                Op::MergeWhere(f, patch) => b.merge_where(f, patch).map(drop),
            };
            done.map_err(|e| at(*line, e))?;
        }
        Ok(())
    })?;
    crate::model::bind_new(&coll, unbound, was_empty)?;
    let mut line = serde_json::to_value(&report).unwrap_or_default();
    line["operations"] = json!(ops.len());
    out.result(&line, || {
        format!(
            "applied {} operations to {} in one transaction",
            ops.len(),
            a.name
        )
    })?;
    out.flush()?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
