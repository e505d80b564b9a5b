//! Opening the store for a command: read-only or writable, never creating
//! one by accident, with the progress bar and --wait; and filters from
//! flags.

use std::path::Path;
use std::sync::{Arc, Mutex};

use quiver::{Collection, Filter, Progress, Store, StoreOptions};

use crate::output::{progress_bar, CliResult, Failure};
use crate::Cli;

pub(crate) fn parse_filter(text: Option<&str>) -> CliResult<Option<Filter>> {
    Ok(match text {
        Some(t) => Some(t.parse::<Filter>()?),
        None => None,
    })
}

pub(crate) fn store_options(cli: &Cli) -> CliResult<StoreOptions> {
    let bar: Arc<Mutex<Option<crate::output::Bar>>> = Arc::new(Mutex::new(None));
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

/// After a filter matched nothing: a warning on stderr for each field it
/// names that no record of `coll` has (a typo, most likely). Not an error:
/// matching nothing is a valid answer.
pub(crate) fn warn_missing_fields(coll: &Collection, filter: Option<&Filter>) {
    let Some(filter) = filter else { return };
    for field in filter.fields() {
        if let Ok(false) = coll.has_field(field) {
            eprintln!(
                "quiver: warning: no record of {:?} has a field {field}, so the filter matched nothing",
                coll.name()
            );
        }
    }
}

/// The collection `name` of `store`; a missing one is bad input whose
/// message suggests a name that is close ("did you mean").
pub(crate) fn collection(store: &Store, name: &str) -> CliResult<Collection> {
    match store.get_collection(name) {
        Ok(c) => Ok(c),
        Err(quiver::Error::NoSuchCollection { .. }) => Err(no_collection(store, name)),
        Err(e) => Err(e.into()),
    }
}

/// "no collection named X", with the closest existing name if one is near.
pub(crate) fn no_collection(store: &Store, name: &str) -> Failure {
    let names: Vec<String> = store
        .list_collections()
        .map(|all| all.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    let hint = closest(name, &names)
        .map(|n| format!("; did you mean {n:?}?"))
        .unwrap_or_else(|| match names.len() {
            0 => " (the store has no collections)".into(),
            _ => format!(" (there are: {})", names.join(", ")),
        });
    Failure::Input(format!("no collection named {name:?}{hint}"))
}

/// The candidate nearest `name` by edit distance, if within a third of
/// its length (at least 1, at most 3 edits), ignoring case.
fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggests_only_near_names() {
        let names = ["notes".to_string(), "code".to_string()];
        assert_eq!(super::closest("note", &names), Some("notes"));
        assert_eq!(super::closest("Notes", &names), Some("notes"));
        assert_eq!(super::closest("cod", &names), Some("code"));
        assert_eq!(super::closest("images", &names), None);
    }
}
