//! The change feed (`Collection::changes`) and its consumers: replaying
//! the feed reproduces a collection exactly, whatever the writes and the
//! snapshots between them; a registered consumer's tombstones are never
//! pruned; a feed that fell behind pruning is an error, never a gap.
//!
//! The many-process case: `PROCS` child processes (this test binary,
//! started on `feed_writer_process`) write one collection at random while
//! the parent follows the feed as a registered consumer, applying it to a
//! copy in memory; at the end the copy equals the store, and so does a
//! replay from 0.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Rng;
use quiver::{Change, Collection, CollectionConfig, Error, Filter, Record, Store, Update};
use serde_json::json;

const DIM: usize = 8;

/// A record as the feed must reproduce it: vector bits, text, metadata.
type Copy = BTreeMap<String, (Vec<u32>, Option<String>, Option<serde_json::Value>)>;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Everything in `coll`, by id.
fn contents(coll: &Collection) -> Copy {
    let mut all = Copy::new();
    coll.for_each_record(None, |r| {
        all.insert(r.id, (bits(&r.vector), r.text, r.metadata));
        Ok(())
    })
    .unwrap();
    all
}

/// Apply the feed after `since` to `copy`; returns where it ended.
fn follow(coll: &Collection, since: u64, copy: &mut Copy) -> quiver::Result<u64> {
    let changes = coll.changes(since)?;
    let until = changes.until();
    let mut last = since;
    for change in changes {
        let (seq, change) = change?;
        assert!(
            seq >= last && seq > since,
            "feed out of order: {seq} after {last}"
        );
        assert!(seq <= until, "feed past its end: {seq} > {until}");
        last = seq;
        match change {
            Change::Upsert(r) => {
                copy.insert(r.id, (bits(&r.vector), r.text, r.metadata));
            }
            Change::Delete(id) => {
                copy.remove(&id);
            }
        }
    }
    Ok(until.max(since))
}

fn open(dir: &std::path::Path) -> (Store, Collection) {
    // Writer processes take turns; on a loaded machine one's snapshot can
    // hold the lock past the default 5 s.
    let options = quiver::StoreOptions {
        busy_timeout: Duration::from_secs(120),
        ..quiver::StoreOptions::default()
    };
    let store = Store::open_with(dir, options).unwrap();
    let coll = match store.collection("c").unwrap() {
        Some(c) => c,
        None => store
            .create_collection("c", &CollectionConfig::new(DIM))
            .unwrap(),
    };
    (store, coll)
}

/// One random write: upserts, replacements, updates, deletes by id and by
/// filter, and batches that delete and write the same id again.
fn random_write(coll: &Collection, rng: &mut Rng, ids: u64) {
    let id = |rng: &mut Rng| format!("r{}", rng.below(ids));
    match rng.below(10) {
        0..=3 => {
            let n = 1 + rng.below(5) as usize;
            let records: Vec<Record> = (0..n)
                .map(|_| {
                    let mut r = Record::new(id(rng), rng.vector(DIM));
                    if rng.below(2) == 0 {
                        r = r.with_text(format!("text {}", rng.below(1000)));
                    }
                    if rng.below(3) > 0 {
                        r = r.with_metadata(json!({"g": rng.below(4), "n": rng.below(100)}));
                    }
                    r
                })
                .collect();
            coll.upsert(&records).unwrap();
        }
        4 | 5 => {
            let victims: Vec<String> = (0..1 + rng.below(3)).map(|_| id(rng)).collect();
            coll.delete(&victims).unwrap();
        }
        6 => {
            let g = rng.below(4) as i64;
            coll.delete_where(&Filter::eq("g", g).and(Filter::lt("n", 20)))
                .unwrap();
        }
        7 => {
            // Another process may delete it first: then there is nothing to update.
            let target = id(rng);
            let update = Update::new(target).merge(json!({"n": rng.below(100), "touched": true}));
            match coll.update(update) {
                Ok(_) | Err(Error::NoSuchRecord { .. }) => {}
                Err(e) => panic!("update failed: {e}"),
            }
        }
        8 => {
            // Delete and write again in one change: the feed must end
            // with the record, not the delete.
            let target = id(rng);
            let r = Record::new(target.clone(), rng.vector(DIM));
            coll.write(|b| {
                b.delete(&[target.as_str()])?;
                b.upsert(std::slice::from_ref(&r))?;
                Ok(())
            })
            .unwrap();
        }
        _ => {
            let r = Record::new(id(rng), rng.vector(DIM)).with_metadata(json!({"g": 0}));
            coll.upsert(&[r]).unwrap();
            let other = id(rng);
            coll.delete(&[other]).unwrap();
        }
    }
}

#[test]
fn replaying_the_feed_reproduces_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, coll) = open(dir.path());
    coll.register_consumer("copy", 0).unwrap();
    let mut rng = Rng::new(7);
    let mut copy = Copy::new();
    let mut at = 0;
    for step in 0..600 {
        random_write(&coll, &mut rng, 80);
        if step % 37 == 0 {
            // A snapshot prunes what every consumer has applied.
            coll.flush().unwrap();
        }
        if step % 23 == 0 {
            at = follow(&coll, at, &mut copy).unwrap();
            coll.acknowledge("copy", at).unwrap();
            assert_eq!(copy, contents(&coll), "copy after step {step}");
        }
    }
    at = follow(&coll, at, &mut copy).unwrap();
    assert_eq!(at, coll.seq().unwrap());
    let now = contents(&coll);
    assert!(
        now.len() > 20,
        "the writes should leave records: {}",
        now.len()
    );
    assert_eq!(copy, now);
    // From 0, into an empty copy: the same, though deletes were pruned.
    let mut fresh = Copy::new();
    follow(&coll, 0, &mut fresh).unwrap();
    assert_eq!(fresh, now);
    // A feed after the last change is empty.
    assert_eq!(coll.changes(at).unwrap().count(), 0);
}

#[test]
fn an_unacknowledged_tombstone_is_never_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, coll) = open(dir.path());
    let mut rng = Rng::new(3);
    let records = common::records(&mut rng, 10, DIM, "r");
    coll.upsert(&records).unwrap();
    let start = coll.seq().unwrap();
    coll.register_consumer("slow", start).unwrap();
    assert_eq!(coll.consumer("slow").unwrap(), Some(start));
    coll.delete(&["r1", "r2", "r3"]).unwrap();
    coll.flush().unwrap(); // a snapshot: the tombstones must stay
    store_reopened(dir.path(), |coll| {
        let deletes: Vec<String> = coll
            .changes(start)
            .unwrap()
            .map(|c| c.unwrap().1)
            .filter_map(|c| match c {
                Change::Delete(id) => Some(id),
                Change::Upsert(_) => None,
            })
            .collect();
        assert_eq!(deletes, ["r1", "r2", "r3"]);
    });
    // Acknowledged: the next snapshot prunes them, and a feed from before
    // is an error naming what to do, never a silent gap.
    let now = coll.seq().unwrap();
    coll.acknowledge("slow", now).unwrap();
    coll.acknowledge("slow", start).unwrap(); // never moves back
    assert_eq!(coll.consumer("slow").unwrap(), Some(now));
    coll.upsert(&[Record::new("r0", rng.vector(DIM))]).unwrap();
    coll.flush().unwrap();
    match coll.changes(start) {
        Err(Error::ChangesPruned { since, pruned, .. }) => {
            assert_eq!(since, start);
            assert!(pruned >= now, "pruned up to {pruned}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a feed from before pruning must fail"),
    }
    assert!(Error::ChangesPruned {
        collection: "c".into(),
        since: 1,
        pruned: 2
    }
    .is_bad_input());
    // From where it acknowledged, the feed goes on.
    let after: Vec<u64> = coll.changes(now).unwrap().map(|c| c.unwrap().0).collect();
    assert_eq!(after, [coll.seq().unwrap()]);
    // Registering below the pruning point is refused; at 0 it is not.
    assert!(matches!(
        coll.register_consumer("late", start),
        Err(Error::ChangesPruned { .. })
    ));
    coll.register_consumer("late", 0).unwrap();
    // Bad arguments.
    assert!(matches!(
        coll.acknowledge("nobody", 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        coll.acknowledge("slow", coll.seq().unwrap() + 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        coll.register_consumer("", 0),
        Err(Error::InvalidArgument { .. })
    ));
    let names: Vec<String> = coll
        .consumers()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["late", "slow"]);
    assert!(coll.remove_consumer("late").unwrap());
    assert!(!coll.remove_consumer("late").unwrap());
}

#[test]
fn without_a_consumer_pruning_makes_an_old_feed_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, coll) = open(dir.path());
    let mut rng = Rng::new(5);
    coll.upsert(&common::records(&mut rng, 5, DIM, "r"))
        .unwrap();
    let before = coll.seq().unwrap();
    coll.delete(&["r0"]).unwrap();
    // Before a snapshot the tombstone is there.
    let got: Vec<Change> = coll
        .changes(before)
        .unwrap()
        .map(|c| c.unwrap().1)
        .collect();
    assert_eq!(got, [Change::Delete("r0".into())]);
    coll.flush().unwrap();
    assert!(matches!(
        coll.changes(before),
        Err(Error::ChangesPruned { .. })
    ));
    // A feed from 0 needs no deletes: the four records.
    assert_eq!(coll.changes(0).unwrap().count(), 4);
    // A read-only store reads the feed; registering is a write.
    drop(coll);
    drop(_store);
    let ro = Store::open_read_only(dir.path()).unwrap();
    let coll = ro.get_collection("c").unwrap();
    assert_eq!(coll.changes(0).unwrap().count(), 4);
    assert!(matches!(
        coll.register_consumer("x", 0),
        Err(Error::ReadOnly { .. })
    ));
}

fn store_reopened(dir: &std::path::Path, f: impl FnOnce(&Collection)) {
    let store = Store::open_read_only(dir).unwrap();
    f(&store.get_collection("c").unwrap());
}

const PROCS: usize = 3;

#[test]
fn a_consumer_follows_writer_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, coll) = open(dir.path());
    coll.register_consumer("follower", 0).unwrap();
    let writes = 150;
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "feed_writer_process", "--nocapture"])
                .env("QUIVER_FEED_STORE", dir.path())
                .env("QUIVER_FEED_ID", p.to_string())
                .env("QUIVER_FEED_WRITES", writes.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut copy = Copy::new();
    let mut at = 0;
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut children = children;
    while !children.is_empty() {
        at = follow(&coll, at, &mut copy).unwrap();
        coll.acknowledge("follower", at).unwrap();
        rounds += 1;
        children.retain_mut(|c| match c.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "a writer process failed: {status}");
                false
            }
            None => true,
        });
        assert!(Instant::now() < deadline, "writers did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    follow(&coll, at, &mut copy).unwrap();
    let now = contents(&coll);
    assert!(rounds > 3, "the follower should have run while they wrote");
    assert_eq!(copy, now);
    let mut fresh = Copy::new();
    follow(&coll, 0, &mut fresh).unwrap();
    assert_eq!(fresh, now);
}

/// A child of `a_consumer_follows_writer_processes`: random writes, with
/// snapshots between them (which prune what the follower acknowledged).
#[test]
fn feed_writer_process() {
    let (Ok(dir), Ok(id), Ok(writes)) = (
        std::env::var("QUIVER_FEED_STORE"),
        std::env::var("QUIVER_FEED_ID"),
        std::env::var("QUIVER_FEED_WRITES"),
    ) else {
        return; // Only a child does anything.
    };
    let (_store, coll) = open(std::path::Path::new(&dir));
    let mut rng = Rng::new(100 + id.parse::<u64>().unwrap());
    for step in 0..writes.parse::<usize>().unwrap() {
        random_write(&coll, &mut rng, 60);
        if step % 25 == 0 {
            coll.flush().unwrap();
        }
    }
}
