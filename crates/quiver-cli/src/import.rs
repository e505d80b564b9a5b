//! `quiver import`: JSON Lines (+ optional raw f32 vectors) into a collection.
//!
//! Two passes: the first reads and validates every line (and vector) without
//! writing, so bad input anywhere leaves the store untouched; the second
//! writes, one transaction per batch, so a killed import leaves whole batches.
//! The writes go through [`quiver::Bulk`]: each batch is added to the index
//! while the next one is read, embedded and committed.
//!
//! An input that cannot be read twice (`-` for stdin, a pipe, `/dev/stdin`,
//! a process substitution) is first copied once into a temporary file (in
//! `$TMPDIR`), and both passes read the copy: so a bad line 40,000 lines
//! into a pipe still writes nothing, at the cost of the copy's disk space
//! until the import ends.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use quiver::embed::SentenceEmbedder;
use quiver::{jsonl, Bulk, Record, Store};

use crate::output::{input, progress_bar, CliResult, Failure, Out};
use crate::{Cli, ImportArgs};

/// Import into `store`, or, when there is no store yet (`None`), into a
/// new one made only if the input is an export (its first line the
/// settings) and only once every line has checked out.
pub(crate) fn run(
    cli: &Cli,
    store: Option<&Store>,
    args: &ImportArgs,
    out: &mut Out,
) -> CliResult<()> {
    if args.batch == 0 {
        return input("--batch must be at least 1");
    }
    let file = args.file.display().to_string();
    if args.vectors.as_deref() == Some(Path::new("-")) && args.file == Path::new("-") {
        return input("the records and --vectors cannot both come from stdin");
    }
    let records_in = Rereadable::open(&args.file)?;
    // An export's first line carries the collection's settings: a missing
    // collection is made with them (once every line has checked out, so
    // bad input still writes nothing); an existing one must agree.
    let settings = first_line(&records_in.path)?.and_then(|l| crate::transfer::settings_of(&l));
    let existing = match store {
        Some(store) => store.collection(&args.name)?,
        None if settings.is_some() => None,
        None => return Err(crate::open::no_store(&cli.store_dir())),
    };
    let (scratch, scratch_coll);
    let coll = match (&existing, &settings) {
        (Some(c), Some(s)) => {
            let have = c.config();
            if (have.dimension, have.metric) != (s.config.dimension, s.config.metric) {
                return input(format!(
                    "{file}: exported from a {}-d {:?} collection; {:?} is {}-d {:?}",
                    s.config.dimension, s.config.metric, args.name, have.dimension, have.metric
                ));
            }
            c
        }
        (Some(c), None) => c,
        (None, Some(s)) => {
            scratch = Store::open_in_memory()?;
            scratch_coll = scratch.create_collection(&args.name, &s.config)?;
            // The field indexes are checked here too, before anything is made.
            for field in &s.indexed_fields {
                scratch_coll
                    .index_field(field)
                    .map_err(|e| Failure::Input(format!("{file}: settings: {e}")))?;
            }
            &scratch_coll
        }
        (None, None) => match store {
            Some(store) => &store.get_collection(&args.name)?,
            None => return Err(crate::open::no_store(&cli.store_dir())),
        },
    };
    let dim = coll.config().dimension;
    let vectors_in = args.vectors.as_deref().map(Rereadable::open).transpose()?;
    let vectors_path = vectors_in
        .as_ref()
        .zip(args.vectors.as_deref())
        .map(|(v, given)| (v.path.as_path(), given.display().to_string()));

    // Pass 1: validate everything.
    let mut lines = 0u64;
    let mut ids = std::collections::HashSet::new();
    let mut source = Source::open(&records_in.path, &file, vectors_path.clone(), dim)?;
    // Lines with text but no vector are embedded with the model.
    let mut model = None;
    while let Some((r, embed)) = source.next(&file)? {
        let at = format!("{file}:{}", source.line_no);
        if embed && model.is_none() {
            let why = format!("{at}: a line without a vector");
            model = Some(crate::model::for_collection(cli, coll, &why)?);
        }
        let placeholder;
        let check = if embed {
            placeholder = Record {
                vector: vec![1.0; dim],
                ..r
            };
            &placeholder
        } else {
            &r
        };
        coll.validate(check)
            .map_err(|e| Failure::Input(format!("{at}: {e}")))?;
        lines += 1;
        ids.insert(check.id.clone());
    }
    source.finish()?;
    let distinct = ids.len() as u64;
    drop(ids);
    let (created, new_store);
    let coll = match (&existing, &settings) {
        (None, Some(s)) => {
            let store = match store {
                Some(store) => store,
                None => {
                    new_store = crate::open::open_write(cli, true)?;
                    &new_store
                }
            };
            created = store.create_collection(&args.name, &s.config)?;
            for field in &s.indexed_fields {
                created.index_field(field)?;
            }
            &created
        }
        _ => coll,
    };

    // Pass 2: write.
    let started = Instant::now();
    let bar = progress_bar(lines, "import");
    let mut source = Source::open(&records_in.path, &file, vectors_path, dim)?;
    let (mut done, mut batches) = (0u64, 0u64);
    let mut batch = Vec::with_capacity(args.batch);
    // Each batch goes into the index while the next is read, embedded and
    // committed.
    let mut bulk = coll.bulk()?;
    loop {
        let item = source.next(&file)?;
        let end = item.is_none();
        batch.extend(item);
        if batch.len() == args.batch || (end && !batch.is_empty()) {
            let report = args.report_commits;
            commit(
                &mut bulk,
                model.as_ref(),
                &mut batch,
                &mut done,
                &mut batches,
                report,
                out,
            )?;
            bar.set_position(done);
        }
        if end {
            break;
        }
    }
    bulk.finish()?;
    // A bulk load ends with a snapshot, so the next open replays nothing.
    coll.flush()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    // Records written: distinct ids (a later line with the same id
    // replaced the earlier one); lines read are reported apart.
    if out.human {
        out.line(&format!(
            "imported {distinct} records ({done} lines) in {batches} transactions, {secs:.2} s ({:.0} lines/s)",
            done as f64 / secs.max(1e-9)
        ))?;
    } else {
        out.json(&serde_json::json!({
            "imported": distinct, "lines": done, "batches": batches, "seconds": secs,
            "records_per_sec": done as f64 / secs.max(1e-9),
        }))?;
    }
    Ok(())
}

fn commit(
    bulk: &mut Bulk<'_>,
    model: Option<&SentenceEmbedder>,
    batch: &mut Vec<(Record, bool)>,
    done: &mut u64,
    batches: &mut u64,
    report: bool,
    out: &mut Out,
) -> CliResult<()> {
    let texts: Vec<String> = batch
        .iter()
        .filter(|(_, embed)| *embed)
        .map(|(r, _)| r.text.clone().unwrap_or_default())
        .collect();
    if let (Some(model), false) = (model, texts.is_empty()) {
        let mut vectors = crate::model::embed_all(model, &texts)?.into_iter();
        for (r, embed) in batch.iter_mut() {
            if *embed {
                r.vector = vectors.next().unwrap_or_default();
            }
        }
    }
    let records: Vec<Record> = batch.drain(..).map(|(r, _)| r).collect();
    bulk.upsert(&records)?;
    *done += records.len() as u64;
    *batches += 1;

    if report {
        out.json(&serde_json::json!({"committed": *done}))?;
        out.flush()?;
    }
    Ok(())
}

/// Reads records from the JSONL file and, if given, the vectors file in step.
struct Source {
    lines: BufReader<File>,
    vectors: Option<(BufReader<File>, String)>,
    dim: usize,
    line_no: u64,
    buf: Vec<u8>,
    /// No line read yet: the first may be an export's settings, skipped.
    first: bool,
}

/// The first line that is not blank, if any.
fn first_line(path: &Path) -> CliResult<Option<Vec<u8>>> {
    let f = File::open(path).or_else(|e| input(format!("cannot open {}: {e}", path.display())))?;
    let mut lines = BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut lines)
            .take(jsonl::MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .or_else(|e| input(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Ok(None);
        }
        if !buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(buf));
        }
    }
}

/// An input file both passes can read: the file itself when it is a
/// regular file, else a temporary copy of it, removed on drop.
struct Rereadable {
    path: std::path::PathBuf,
    spooled: bool,
}

impl Rereadable {
    fn open(given: &Path) -> CliResult<Rereadable> {
        let stdin = given == Path::new("-");
        if !stdin
            && std::fs::metadata(given)
                .map_err(|e| Failure::Input(format!("cannot open {}: {e}", given.display())))?
                .is_file()
        {
            return Ok(Rereadable {
                path: given.to_path_buf(),
                spooled: false,
            });
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("quiver-import-{}-{n}.spool", std::process::id()));
        let spool = Rereadable {
            path,
            spooled: true,
        };
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&spool.path)
            .map_err(|e| {
                Failure::Internal(format!("cannot spool {}: {e}", spool.path.display()))
            })?;
        let copied = if stdin {
            std::io::copy(&mut std::io::stdin().lock(), &mut to)
        } else {
            File::open(given)
                .and_then(|mut from| std::io::copy(&mut from, &mut to))
                .map_err(|e| std::io::Error::other(format!("{}: {e}", given.display())))
        };
        copied.map_err(|e| Failure::Input(format!("cannot read {}: {e}", given.display())))?;
        Ok(spool)
    }
}

impl Drop for Rereadable {
    fn drop(&mut self) {
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Source {
    /// Read `path` (named `shown` in messages) and, if given, `vectors`.
    fn open(
        path: &Path,
        shown: &str,
        vectors: Option<(&Path, String)>,
        dim: usize,
    ) -> CliResult<Source> {
        let open = |p: &Path, name: &str| {
            File::open(p).map_err(|e| Failure::Input(format!("cannot open {name}: {e}")))
        };
        Ok(Source {
            lines: BufReader::with_capacity(1 << 20, open(path, shown)?),
            vectors: match vectors {
                Some((p, name)) => Some((BufReader::new(open(p, &name)?), name)),
                None => None,
            },
            dim,
            line_no: 0,
            buf: Vec::new(),
            first: true,
        })
    }

    /// The next record, skipping blank lines, and whether its vector is
    /// still to be embedded from its text.
    fn next(&mut self, file: &str) -> CliResult<Option<(Record, bool)>> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            let n = (&mut self.lines)
                .take(jsonl::MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Failure::Input(format!("{file}: read error: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            let at = format!("{file}:{}", self.line_no);
            if std::mem::take(&mut self.first) {
                if crate::transfer::settings_of(&self.buf).is_some() {
                    continue;
                }
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    self.first = true;
                }
            }
            let line = match jsonl::parse_line(&self.buf) {
                Ok(Some(line)) => line,
                Ok(None) => continue,
                Err(e) => return input(format!("{at}: {e}")),
            };
            let id = line.id;
            let vector = match (&mut self.vectors, line.vector) {
                (Some(_), Some(_)) => {
                    return input(format!(
                        "{at}: line has a \"vector\" but --vectors was given"
                    ))
                }
                (Some((reader, name)), None) => {
                    let mut raw = vec![0u8; self.dim * 4];
                    if let Err(e) = reader.read_exact(&mut raw) {
                        return input(format!(
                            "{name}: no vector for line {} ({e}): it must hold one {}-d f32 row per line",
                            self.line_no, self.dim
                        ));
                    }
                    crate::vectors::le_f32s(&raw)
                }
                (None, Some(v)) => v,
                (None, None) if line.text.is_some() => Vec::new(),
                (None, None) => {
                    return input(format!(
                        "{at}: no \"vector\" and no \"text\" to embed (and no --vectors file)"
                    ))
                }
            };
            let embed = vector.is_empty() && line.text.is_some() && self.vectors.is_none();
            let record = Record {
                id,
                vector,
                text: line.text,
                metadata: line.metadata,
            };
            return Ok(Some((record, embed)));
        }
    }

    /// After the last line: the vectors file must be used up exactly.
    fn finish(mut self) -> CliResult<()> {
        if let Some((reader, name)) = &mut self.vectors {
            let mut rest = [0u8; 1];
            if reader
                .read(&mut rest)
                .map_err(|e| Failure::Input(format!("{name}: {e}")))?
                > 0
            {
                return input(format!("{name}: more vectors than lines in the JSONL file"));
            }
        }
        Ok(())
    }
}
