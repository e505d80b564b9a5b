//! Embedding models on the command line: `--model DIR` / `$QUIVER_MODEL`,
//! `quiver embed`, `quiver reembed`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use quiver::embed::{Embedder, SentenceEmbedder};
use quiver::{Collection, CollectionConfig, Record, Store};

use crate::output::{input, progress_bar, CliResult, Failure, Out};
use crate::Cli;

/// Texts embedded per call: enough to keep both cores busy.
pub(crate) const BATCH: usize = 64;

/// The model `--model` names, as given.
pub(crate) fn given(cli: &Cli) -> Option<String> {
    cli.model().map(|p| p.to_string_lossy().into_owned())
}

/// `$QUIVER_MODEL`, if set.
fn from_env() -> Option<String> {
    std::env::var_os("QUIVER_MODEL").map(|p| p.to_string_lossy().into_owned())
}

/// Load the model `--model` names, if any.
pub(crate) fn load(cli: &Cli) -> CliResult<Option<SentenceEmbedder>> {
    given(cli).map(|m| load_source(&m)).transpose()
}

/// Load the model `--model` names, else `$QUIVER_MODEL`'s: for commands
/// that embed with no collection's model to go by (`create` without
/// `--dim`, `embed`, `reembed`).
pub(crate) fn load_or_env(cli: &Cli) -> CliResult<Option<SentenceEmbedder>> {
    given(cli)
        .or_else(from_env)
        .map(|m| load_source(&m))
        .transpose()
}

/// Load a model from a local directory or (feature `hub`) a Hugging Face
/// Hub id such as `owner/name`, which is then its recorded source.
pub(crate) fn load_source(source: &str) -> CliResult<SentenceEmbedder> {
    let d = Path::new(source);
    if !d.exists() && crate::hub::looks_like_hub_id(source) {
        #[cfg(feature = "hub")]
        return Ok(SentenceEmbedder::load(crate::hub::fetch(source)?)?.with_source(source));
        #[cfg(not(feature = "hub"))]
        return input(format!(
            "no model directory {source}; fetching models from the Hugging Face Hub needs a build with the 'hub' feature"
        ));
    }
    Ok(SentenceEmbedder::load(d)?)
}

/// Make `coll` ready to embed text: with the model `--model` names
/// (which must be the one the collection is bound to, if any), else with
/// its bound model (from the directory or Hub id it came from), else with
/// `$QUIVER_MODEL`. Returns the model when the collection is bound to
/// none, for the write to bind it ([`bind_new`]).
pub(crate) fn ready(
    cli: &Cli,
    coll: &Collection,
    why: &str,
) -> CliResult<Option<Arc<dyn Embedder>>> {
    let bound = coll.model()?;
    let named = match (given(cli), &bound) {
        (Some(m), _) => Some(m),
        (None, Some(_)) => None,
        (None, None) => from_env(),
    };
    if let Some(source) = named {
        let model: Arc<dyn Embedder> = Arc::new(load_source(&source)?);
        coll.use_embedder(model.clone())?;
        return Ok(bound.is_none().then_some(model));
    }
    let Some(binding) = bound else {
        let old = coll
            .config()
            .model
            .map(|m| format!(" (its vectors came from {m})"))
            .unwrap_or_default();
        return input(format!(
            "{why} needs an embedding model, and collection {:?} is bound to none{old}: give --model DIR, or bind one with `quiver alter {} --model DIR`",
            coll.name(),
            coll.name()
        ));
    };
    if Path::new(&binding.source).is_dir() {
        coll.embedder()?;
    } else if crate::hub::looks_like_hub_id(&binding.source) {
        coll.use_embedder(Arc::new(load_source(&binding.source)?))?;
    } else {
        return input(format!(
            "collection {:?} is bound to {} from {}, which is not a model directory here; if the model moved, bind it again from its new place: quiver alter {} --model DIR",
            coll.name(),
            binding.id,
            binding.source,
            coll.name()
        ));
    }
    Ok(None)
}

/// After a write embedded text with `model` into a collection bound to no
/// model (what [`ready`] returned): bind it, if it was empty before the
/// write (the model made all its vectors) or was stamped with this model's
/// weights by an older build; else say that nothing ties its vectors to
/// the model.
pub(crate) fn bind_new(
    coll: &Collection,
    model: Option<Arc<dyn Embedder>>,
    was_empty: bool,
) -> CliResult<()> {
    let Some(model) = model else { return Ok(()) };
    if coll.config().model.is_some() || was_empty {
        // The write is in: a failure to bind (another process bound the
        // collection meanwhile) is worth saying, not an exit that claims
        // nothing was written.
        if let Err(e) = coll.bind_embedder(model) {
            eprintln!("quiver: warning: written, but not bound to the model: {e}");
        }
    } else {
        unbound_warning(coll, &*model);
    }
    Ok(())
}

/// A text query or write with a model the collection is not bound to.
pub(crate) fn unbound_warning(coll: &Collection, model: &dyn Embedder) {
    eprintln!(
        "quiver: warning: collection {:?} is bound to no model, so nothing says its vectors came from {}; bind it with `quiver alter {} --model ..`",
        coll.name(),
        model.id(),
        coll.name()
    );
}

/// Run `embed` over `texts` in batches of [`BATCH`], the vectors in order.
pub(crate) fn in_batches(
    texts: &[String],
    embed: impl Fn(&[&str]) -> quiver::Result<Vec<Vec<f32>>>,
) -> CliResult<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(embed(&refs)?);
    }
    Ok(out)
}

/// Embed documents with `coll`'s model (made [`ready`] first), in batches.
pub(crate) fn embed_documents(coll: &Collection, texts: &[String]) -> CliResult<Vec<Vec<f32>>> {
    in_batches(texts, |t| coll.embed_documents(t))
}

#[derive(clap::Args, Debug)]
pub(crate) struct EmbedArgs {
    /// Write raw little-endian f32 rows instead of JSON lines.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    pub(crate) model: crate::ModelArg,
    #[command(flatten)]
    no_store: crate::NoStore,
}

/// `quiver embed`: stdin lines (`{"text": ..}` or plain text) to vectors, in order.
pub(crate) fn embed_stdin(cli: &Cli, args: &EmbedArgs, out: &mut Out) -> CliResult<()> {
    let Some(model) = load_or_env(cli)? else {
        return input("embed needs --model DIR (or QUIVER_MODEL)");
    };
    let stdin = std::io::stdin();
    let mut texts = Vec::new();
    let mut raw_out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut flush = |texts: &mut Vec<String>, out: &mut Out| -> CliResult<()> {
        for v in in_batches(texts, |t| model.embed(t))? {
            if args.raw {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                raw_out.write_all(&bytes)?;
            } else {
                out.json(&serde_json::json!({ "vector": v }))?;
            }
        }
        texts.clear();
        Ok(())
    };
    for (i, line) in stdin.lock().split(b'\n').enumerate() {
        let line = line.map_err(|e| Failure::Input(format!("stdin: {e}")))?;
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.strip_suffix('\r').unwrap_or(t),
            Err(e) => return input(format!("stdin line {}: not valid UTF-8 ({e})", i + 1)),
        };
        let text = text_of(text);
        if text.trim().is_empty() {
            return input(format!(
                "stdin line {}: an empty or blank text cannot be embedded",
                i + 1
            ));
        }
        texts.push(text);
        if texts.len() == BATCH * 4 {
            flush(&mut texts, out)?;
        }
    }
    flush(&mut texts, out)?;
    raw_out.flush()?;
    Ok(())
}

/// A line's text: the `text` of a JSON object line, else the line itself.
fn text_of(line: &str) -> String {
    if line.trim_start().starts_with('{') {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(serde_json::Value::String(t)) = o.get("text") {
                return t.clone();
            }
        }
    }
    line.to_string()
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReembedArgs {
    /// The collection to read.
    name: String,
    /// The collection to write, bound to --model (created if missing).
    #[arg(long)]
    into: String,
    /// Records per transaction.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[command(flatten)]
    pub(crate) model: crate::ModelArg,
}

/// `quiver reembed`: copy a collection into another, embedding each
/// record's text with --model. Records go in id order, a batch per
/// transaction, so a re-run resumes after the last id written.
pub(crate) fn reembed(
    cli: &Cli,
    store: &Store,
    args: &ReembedArgs,
    out: &mut Out,
) -> CliResult<()> {
    if args.batch == 0 {
        return input("--batch must be at least 1");
    }
    quiver::validate_name(&args.into)?;
    let Some(model) = load_or_env(cli)? else {
        return input("reembed needs --model DIR (or QUIVER_MODEL): the model to embed with");
    };
    let from = crate::open::collection(store, &args.name)?;
    if args.into == args.name {
        return input("--into must name another collection");
    }
    let into = match store.collection(&args.into)? {
        Some(c) => c,
        None => {
            let mut config: CollectionConfig = from.config();
            config.dimension = model.dimension();
            config.model = Some(model.id().to_string());
            config.embedding = Some(model.binding());
            store.create_collection(&args.into, &config)?
        }
    };
    let id = model.id().to_string();
    let model: Arc<dyn Embedder> = Arc::new(model);
    if into.model()?.is_none() && into.count()? == 0 {
        // An empty collection made beforehand: this model makes all of it.
        into.bind_embedder(model)?;
    } else {
        into.use_embedder(model)?;
    }
    // Resume after the last id already written (ids go in order).
    let mut after = into.last_id()?;
    let resumed = after.is_some();
    let total = from.count()?;
    let bar = progress_bar(total, "reembed");
    let (mut done, mut without_text) = (0u64, 0u64);
    loop {
        let page = from.scan(None, after.as_deref(), args.batch)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let page_len = page.len();
        let mut records: Vec<Record> = page
            .into_iter()
            .filter(|r| r.text.as_deref().is_some_and(|t| !t.trim().is_empty()))
            .collect();
        without_text += (page_len - records.len()) as u64;
        let texts: Vec<String> = records
            .iter()
            .map(|r| r.text.clone().unwrap_or_default())
            .collect();
        for (r, v) in records.iter_mut().zip(embed_documents(&into, &texts)?) {
            r.vector = v;
        }
        if !records.is_empty() {
            into.upsert(&records)?;
        }
        done += records.len() as u64;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    into.flush()?;
    let count = into.count()?;
    out.result(
        &serde_json::json!({
            "reembedded": done, "into": args.into, "model": id, "resumed": resumed,
            "skipped_without_text": without_text, "count": count,
        }),
        || format!("embedded {done} records into {} with {id}", args.into),
    )
}
