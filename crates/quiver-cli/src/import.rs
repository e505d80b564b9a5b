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

use quiver::{jsonl, Record, Store};

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
    let Some(path) = &args.file else {
        return input("give a JSON Lines file (or - for stdin), or --from milvus://…");
    };
    let file = path.display().to_string();
    if args.vectors.as_deref() == Some(Path::new("-")) && path == Path::new("-") {
        return input("the records and --vectors cannot both come from stdin");
    }
    let records_in = Rereadable::open(path)?;
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
            if let (Some(theirs), Some(ours)) = (&s.config.embedding, &have.embedding) {
                if theirs.digest() != ours.digest() {
                    return input(format!(
                        "{file}: exported from a collection bound to {}; {:?} is bound to {}",
                        theirs.id, args.name, ours.id
                    ));
                }
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
            Some(store) => &crate::open::collection(store, &args.name)?,
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
    let expires_at = args.expiry.resolve()?;
    let mut source = Source::open(&records_in.path, &file, vectors_path.clone(), dim)?;
    source.expires_at = expires_at;
    // Lines with text but no vector are embedded with the model.
    let mut embeds = 0u64;
    let mut unbound = None;
    while let Some((r, embed)) = source.next(&file)? {
        let at = format!("{file}:{}", source.line_no);
        if embed && embeds == 0 {
            let why = format!("{at}: a line without a vector");
            unbound = crate::model::ready(cli, coll, &why)?;
        }
        if embed {
            embeds += 1;
            let text = r.text.as_deref().unwrap_or("");
            if text.trim().is_empty() {
                return input(format!(
                    "{at}: record {:?}: an empty or blank text cannot be embedded",
                    r.id
                ));
            }
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
    let fresh = existing.is_none();
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

    // Pass 2: write. Batches are read and embedded on one thread while
    // the one before is committed on this one (and added to the index by
    // the bulk load meanwhile).
    if embeds > 0 && fresh {
        // A collection made just now: its model is the one checked above.
        unbound = crate::model::ready(cli, coll, "the import")?;
    }
    let was_empty = unbound.is_some() && coll.count()? == 0;
    let started = Instant::now();
    let progress = Progress::new(lines, embeds > 0);
    let mut source = Source::open(&records_in.path, &file, vectors_path, dim)?;
    source.expires_at = expires_at;
    let mut tally = Tally::default();
    let mut bulk = coll.bulk()?;
    // Only an import that embeds keeps the ids it has seen (for resuming).
    let mut seen = Seen {
        track: embeds > 0,
        ..Seen::default()
    };
    std::thread::scope(|scope| -> CliResult<()> {
        let (send, batches_in) = std::sync::mpsc::sync_channel::<CliResult<Prepared>>(1);
        let progress = &progress;
        let seen = &mut seen;
        let reader = scope.spawn(move || loop {
            let prepared = prepare(coll, &mut source, &file, args.batch, progress, seen);
            let end = matches!(&prepared, Ok(p) if p.end) || prepared.is_err();
            if send.send(prepared).is_err() || end {
                return;
            }
        });
        let mut ended = false;
        for prepared in batches_in {
            let prepared = prepared?;
            tally.lines += prepared.lines;
            tally.unchanged += prepared.unchanged;
            tally.embedded += prepared.embedded;
            tally.reused += prepared.reused;
            if !prepared.records.is_empty() {
                bulk.upsert(&prepared.records)?;
                tally.batches += 1;
            }
            progress.committed(tally.lines);
            if args.report_commits && !prepared.records.is_empty() {
                out.json(&serde_json::json!({"committed": tally.lines}))?;
                out.flush()?;
            }
            if prepared.end {
                ended = true;
                break;
            }
        }
        if reader.join().is_err() || !ended {
            return Err(Failure::Internal(
                "the import's reading thread stopped before the end of the input".into(),
            ));
        }
        Ok(())
    })?;
    bulk.finish()?;
    crate::model::bind_new(coll, unbound, was_empty)?;
    // A bulk load ends with a snapshot, so the next open replays nothing.
    coll.flush()?;
    let secs = started.elapsed().as_secs_f64();
    progress.finish();
    // Records written: distinct ids written (a later line with the same id
    // replaced the earlier one); not those already stored as they are.
    let imported = if seen.track {
        seen.written.len() as u64
    } else {
        distinct
    };
    let summary = serde_json::json!({
        "imported": imported, "unchanged": tally.unchanged, "lines": tally.lines,
        "embedded": tally.embedded, "reused_vectors": tally.reused,
        "batches": tally.batches, "seconds": secs,
        "records_per_sec": tally.lines as f64 / secs.max(1e-9),
    });
    out.result(&summary, || {
        format!(
            "imported {imported} records ({} lines, {} unchanged, {} embedded) in {} transactions, {secs:.2} s ({:.0} lines/s)",
            tally.lines, tally.unchanged, tally.embedded, tally.batches,
            tally.lines as f64 / secs.max(1e-9)
        )
    })?;
    Ok(())
}

/// What pass 2 counted.
#[derive(Default)]
struct Tally {
    lines: u64,
    unchanged: u64,
    embedded: u64,
    reused: u64,
    batches: u64,
}

/// The ids pass 2 has read so far, and those it has written (kept only
/// when `track`: an import that embeds).
#[derive(Default)]
struct Seen {
    track: bool,
    read: std::collections::HashSet<String>,
    written: std::collections::HashSet<String>,
}

/// One batch, read and embedded, ready to commit.
struct Prepared {
    records: Vec<Record>,
    lines: u64,
    /// Lines whose record is stored already, text, metadata and all.
    unchanged: u64,
    embedded: u64,
    /// Lines whose text was stored already: its vector is taken over.
    reused: u64,
    /// The input ended with this batch.
    end: bool,
}

/// Read up to `batch` lines and embed the texts that need it. A line
/// whose record is stored with the same text is not embedded again (a
/// killed import, run again, embeds only what it had not written): its
/// stored vector is reused, and if its metadata is the same too, and no
/// earlier line of this import had its id, it is left out.
fn prepare(
    coll: &quiver::Collection,
    source: &mut Source,
    file: &str,
    batch: usize,
    progress: &Progress,
    seen: &mut Seen,
) -> CliResult<Prepared> {
    let mut read = Vec::with_capacity(batch);
    let mut end = false;
    while read.len() < batch {
        match source.next(file)? {
            Some(item) => read.push(item),
            None => {
                end = true;
                break;
            }
        }
    }
    let mut p = Prepared {
        records: Vec::with_capacity(read.len()),
        lines: read.len() as u64,
        unchanged: 0,
        embedded: 0,
        reused: 0,
        end,
    };
    let mut to_embed: Vec<usize> = Vec::new();
    for (mut r, embed) in read {
        // A repeated id is always written: the last line wins, as in one
        // import from empty.
        let first = !seen.track || seen.read.insert(r.id.clone());
        if embed {
            match coll.get(&r.id)? {
                Some(stored) if stored.text == r.text => {
                    if first && stored.metadata == r.metadata {
                        p.unchanged += 1;
                        continue;
                    }
                    r.vector = stored.vector;
                    p.reused += 1;
                }
                _ => to_embed.push(p.records.len()),
            }
        }
        if seen.track {
            seen.written.insert(r.id.clone());
        }
        p.records.push(r);
    }
    for chunk in to_embed.chunks(crate::model::BATCH) {
        let texts: Vec<&str> = chunk
            .iter()
            .map(|&i| p.records[i].text.as_deref().unwrap_or(""))
            .collect();
        let vectors = coll.embed_documents(&texts)?;
        for (&i, v) in chunk.iter().zip(vectors) {
            p.records[i].vector = v;
        }
        p.embedded += chunk.len() as u64;
        progress.embedded(chunk.len() as u64);
    }
    Ok(p)
}

/// Import progress: a bar by record on a terminal's stderr (shown once
/// the import has run half a second, so a short one does not flash),
/// nothing otherwise; and at the end, when stderr is not a terminal and
/// the import embedded text, a one-line summary there.
struct Progress {
    bar: crate::output::Bar,
    embedding: bool,
    started: Instant,
    embedded: std::sync::atomic::AtomicU64,
    committed: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(lines: u64, embedding: bool) -> Progress {
        Progress {
            bar: progress_bar(lines, if embedding { "embed" } else { "import" }),
            embedding,
            started: Instant::now(),
            embedded: Default::default(),
            committed: Default::default(),
        }
    }

    fn embedded(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let done = self.embedded.fetch_add(n, Ordering::Relaxed) + n;
        self.show(done.max(self.committed.load(Ordering::Relaxed)));
    }

    fn committed(&self, lines: u64) {
        use std::sync::atomic::Ordering;
        self.committed.store(lines, Ordering::Relaxed);
        if !self.embedding {
            self.show(lines);
        }
    }

    fn show(&self, position: u64) {
        self.bar.set_position(position);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        use std::io::IsTerminal;
        if self.embedding && !std::io::stderr().is_terminal() {
            let secs = self.started.elapsed().as_secs_f64();
            let n = self.embedded.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "quiver: embedded {n} texts in {secs:.1} s ({:.0}/s)",
                n as f64 / secs.max(1e-9)
            );
        }
    }
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
    /// The expiry of lines without one (`--ttl`, `--expires-at`).
    expires_at: Option<i64>,
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
            expires_at: None,
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
                expires_at: line.expires_at.or(self.expires_at),
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
