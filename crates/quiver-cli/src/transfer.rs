//! Leaving with your data: `export` (JSON Lines that `import` reads back
//! to an identical collection) and `backup` (a consistent copy of the
//! whole store while it is written).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use crate::open::{open_read, parse_filter};
use crate::output::{input, CliResult, Failure, Out};
use crate::Cli;

/// The key of an export's first line.
pub(crate) const SETTINGS_KEY: &str = "quiver_settings";

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// The collection.
    pub name: String,
    /// Only the records matching this filter.
    #[arg(long)]
    pub filter: Option<String>,
    /// Write the vectors here as raw little-endian f32 rows (one per line
    /// out, as `import --vectors` reads them) instead of in the lines.
    #[arg(long, value_name = "FILE.f32")]
    pub vectors: Option<PathBuf>,
    /// Leave out the first line with the collection's settings.
    #[arg(long)]
    pub no_settings: bool,
}

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// A new or empty directory: the backup, itself a store.
    pub dest: PathBuf,
}

/// `quiver export`: the settings line, then one line per record in id
/// order, all from one consistent state. Each f32 is written as the f64 of
/// the same value, which reads back to the same bits.
pub(crate) fn export(cli: &Cli, a: &ExportArgs, out: &mut Out) -> CliResult<ExitCode> {
    let filter = parse_filter(a.filter.as_deref())?;
    let store = open_read(cli)?;
    let coll = crate::open::collection(&store, &a.name)?;
    let mut vectors = match &a.vectors {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .or_else(|e| input(format!("--vectors {}: {e}", p.display())))?,
        )),
        None => None,
    };
    if !a.no_settings {
        out.json(&json!({SETTINGS_KEY: {
            "name": coll.name(),
            "config": coll.config(),
            "indexed_fields": coll.indexed_fields()?,
        }}))?;
    }
    let mut failed: Option<Failure> = None;
    let mut exported = 0u64;
    coll.for_each_record(filter.as_ref(), |r| {
        exported += 1;
        let mut line = json!({"id": r.id});
        match &mut vectors {
            Some(w) => {
                for x in &r.vector {
                    if let Err(e) = w.write_all(&x.to_le_bytes()) {
                        failed = Some(Failure::Internal(format!("--vectors: {e}")));
                        return Err(quiver::Error::InvalidArgument {
                            reason: "stopped".into(),
                        });
                    }
                }
            }
            None => {
                line["vector"] = crate::output::exact_vector(&r.vector);
            }
        }
        if let Some(t) = r.text {
            line["text"] = t.into();
        }
        if let Some(m) = r.metadata {
            line["metadata"] = m;
        }
        if let Some(at) = r.expires_at {
            line["expires_at"] = quiver::clock::format_rfc3339(at).into();
        }
        if let Err(e) = out.json(&line) {
            failed = Some(e);
            return Err(quiver::Error::InvalidArgument {
                reason: "stopped".into(),
            });
        }
        Ok(())
    })
    .map_err(|e| failed.take().unwrap_or_else(|| e.into()))?;
    if exported == 0 {
        crate::open::warn_missing_fields(&coll, filter.as_ref());
    }
    if let Some(mut w) = vectors {
        w.flush()
            .and_then(|()| w.get_ref().sync_all())
            .map_err(|e| Failure::Internal(format!("--vectors: {e}")))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `quiver backup DEST`.
pub(crate) fn backup(cli: &Cli, a: &BackupArgs, out: &mut Out) -> CliResult<ExitCode> {
    let store = open_read(cli)?;
    let report = store.backup(&a.dest)?;
    out.result(&report, || {
        format!("backed up the store to {}", a.dest.display())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The settings an export's first line carries, if `line` is one.
pub(crate) fn settings_of(line: &[u8]) -> Option<Settings> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let s = v.as_object()?.get(SETTINGS_KEY)?;
    Some(Settings {
        config: serde_json::from_value(s.get("config")?.clone()).ok()?,
        indexed_fields: serde_json::from_value(
            s.get("indexed_fields").cloned().unwrap_or(json!([])),
        )
        .ok()?,
    })
}

/// A collection's settings, from an export.
pub(crate) struct Settings {
    pub config: quiver::CollectionConfig,
    pub indexed_fields: Vec<String>,
}
