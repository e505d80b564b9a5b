//! Opening the store for a command: read-only or writable, never creating
//! one by accident, with the progress bar and --wait; and filters from
//! flags.

use std::path::Path;
use std::sync::{Arc, Mutex};

use quiver::{Filter, Progress, Store, StoreOptions};

use crate::output::{progress_bar, CliResult, Failure};
use crate::Cli;

pub(crate) fn parse_filter(text: Option<&str>) -> CliResult<Option<Filter>> {
    Ok(match text {
        Some(t) => Some(t.parse::<Filter>()?),
        None => None,
    })
}

pub(crate) fn store_options(cli: &Cli) -> CliResult<StoreOptions> {
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
    let mut options = StoreOptions {
        progress: Some(Arc::new(progress)),
        ..StoreOptions::default()
    };
    if let Some(wait) = cli.wait()? {
        options.busy_timeout = wait;
    }
    Ok(options)
}

/// Open for writing. Only `create` may make a new store; other commands
/// refuse a directory without one, so bad input leaves nothing behind.
pub(crate) fn open_write(cli: &Cli, may_create: bool) -> CliResult<Store> {
    let dir = cli.store_dir();
    if !may_create && !dir.join(quiver::DB_FILE).is_file() {
        return Err(no_store(&dir));
    }
    Ok(Store::open_with(&dir, store_options(cli)?)?)
}

pub(crate) fn open_read(cli: &Cli) -> CliResult<Store> {
    let dir = cli.store_dir();
    if !dir.join(quiver::DB_FILE).is_file() {
        return Err(no_store(&dir));
    }
    match Store::open_read_only_with(&dir, store_options(cli)?) {
        // A store from an older build: migrate it once (needs the writer
        // lock, so not beside a live writer), then read.
        Err(quiver::Error::OldSchema { .. }) => {
            Store::open_with(&dir, store_options(cli)?)?.close()?;
            Ok(Store::open_read_only_with(&dir, store_options(cli)?)?)
        }
        other => Ok(other?),
    }
}

pub(crate) fn no_store(dir: &Path) -> Failure {
    Failure::Input(format!(
        "no quiver store at {} (create a collection first, or pass --store / set QUIVER_STORE)",
        dir.display()
    ))
}
