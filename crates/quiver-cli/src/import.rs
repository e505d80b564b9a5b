//! `quiver import`: JSON Lines (+ optional raw f32 vectors) into a collection.
//!
//! Two passes: the first reads and validates every line (and vector) without
//! writing, so bad input anywhere leaves the store untouched; the second
//! writes, one transaction per batch, so a killed import leaves whole batches.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use quiver::{jsonl, Collection, Record, Store};

use crate::output::{input, progress_bar, CliResult, Failure, Out};
use crate::ImportArgs;

pub(crate) fn run(store: &Store, args: &ImportArgs, out: &mut Out) -> CliResult<()> {
    let coll = store.get_collection(&args.name)?;
    if args.batch == 0 {
        return input("--batch must be at least 1");
    }
    let dim = coll.config().dimension;
    let file = args.file.display().to_string();

    // Pass 1: validate everything.
    let mut lines = 0u64;
    let mut source = Source::open(&args.file, args.vectors.as_deref(), dim)?;
    while let Some(r) = source.next(&file)? {
        coll.validate(&r)
            .map_err(|e| Failure::Input(format!("{file}:{}: {e}", source.line_no)))?;
        lines += 1;
    }
    source.finish()?;

    // Pass 2: write.
    let started = Instant::now();
    let bar = progress_bar(lines, "import");
    let mut source = Source::open(&args.file, args.vectors.as_deref(), dim)?;
    let (mut done, mut batches) = (0u64, 0u64);
    let mut batch = Vec::with_capacity(args.batch);
    while let Some(r) = source.next(&file)? {
        batch.push(r);
        if batch.len() == args.batch {
            commit(
                &coll,
                &mut batch,
                &mut done,
                &mut batches,
                args.report_commits,
                out,
            )?;
            bar.set_position(done);
        }
    }
    if !batch.is_empty() {
        commit(
            &coll,
            &mut batch,
            &mut done,
            &mut batches,
            args.report_commits,
            out,
        )?;
    }
    // A bulk load ends with a snapshot, so the next open replays nothing.
    coll.flush()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if out.human {
        out.line(&format!(
            "imported {done} records in {batches} transactions, {secs:.2} s ({:.0} records/s)",
            done as f64 / secs.max(1e-9)
        ))?;
    } else {
        out.json(&serde_json::json!({
            "imported": done, "batches": batches, "seconds": secs,
            "records_per_sec": done as f64 / secs.max(1e-9),
        }))?;
    }
    Ok(())
}

fn commit(
    coll: &Collection,
    batch: &mut Vec<Record>,
    done: &mut u64,
    batches: &mut u64,
    report: bool,
    out: &mut Out,
) -> CliResult<()> {
    coll.upsert(batch)?;
    *done += batch.len() as u64;
    *batches += 1;
    batch.clear();
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
}

impl Source {
    fn open(path: &Path, vectors: Option<&Path>, dim: usize) -> CliResult<Source> {
        let open = |p: &Path| {
            File::open(p).map_err(|e| Failure::Input(format!("cannot open {}: {e}", p.display())))
        };
        Ok(Source {
            lines: BufReader::with_capacity(1 << 20, open(path)?),
            vectors: match vectors {
                Some(p) => Some((BufReader::new(open(p)?), p.display().to_string())),
                None => None,
            },
            dim,
            line_no: 0,
            buf: Vec::new(),
        })
    }

    /// The next record, skipping blank lines.
    fn next(&mut self, file: &str) -> CliResult<Option<Record>> {
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
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                }
                (None, Some(v)) => v,
                (None, None) => {
                    return input(format!("{at}: no \"vector\" (and no --vectors file)"))
                }
            };
            return Ok(Some(Record {
                id,
                vector,
                text: line.text,
                metadata: line.metadata,
            }));
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
