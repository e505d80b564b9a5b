//! DESIGN §8: every bad input is a typed error and leaves the store as it was.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use quiver::{CollectionConfig, Error, Metric, Record, Scalar, SearchOptions, Store};

const DIM: usize = 4;

/// Everything observable about a collection, to compare before and after.
fn fingerprint(store: &Store) -> String {
    let coll = store.get_collection("c").unwrap();
    let info = coll.info().unwrap();
    let mut out = format!("{} {} {:?}", info.count, info.seq, info.config);
    for i in 0..5 {
        out.push_str(&format!("{:?}", coll.get(&format!("r{i}")).unwrap()));
    }
    out.push_str(&format!("{:?}", store.list_collections().unwrap()));
    out
}

#[test]
fn bad_input_is_typed_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    coll.upsert(
        &(0..5)
            .map(|i| Record::new(format!("r{i}"), vec![1.0, i as f32, 0.0, 1.0]))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let before = fingerprint(&store);
    let good = Record::new("ok", vec![1.0, 0.0, 0.0, 0.0]);

    type Case<'a> = (
        &'a str,
        Box<dyn Fn() -> Result<(), Error> + 'a>,
        fn(&Error) -> bool,
    );
    let cases: Vec<Case> = vec![
        (
            "wrong dimension",
            Box::new(|| {
                coll.upsert(&[good.clone(), Record::new("x", vec![1.0; 5])])
                    .map(drop)
            }),
            |e| {
                matches!(
                    e,
                    Error::DimensionMismatch {
                        expected: 4,
                        got: 5,
                        ..
                    }
                )
            },
        ),
        (
            "NaN",
            Box::new(|| {
                coll.upsert(&[
                    good.clone(),
                    Record::new("x", vec![f32::NAN, 0.0, 0.0, 1.0]),
                ])
                .map(drop)
            }),
            |e| matches!(e, Error::InvalidVector { .. }),
        ),
        (
            "infinity",
            Box::new(|| {
                coll.upsert(&[Record::new("x", vec![f32::INFINITY, 0.0, 0.0, 1.0])])
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidVector { .. }),
        ),
        (
            "zero vector under cos",
            Box::new(|| coll.upsert(&[Record::new("x", vec![0.0; 4])]).map(drop)),
            |e| matches!(e, Error::InvalidVector { .. }),
        ),
        (
            "empty id",
            Box::new(|| {
                coll.upsert(&[good.clone(), Record::new("", vec![1.0; 4])])
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidId { .. }),
        ),
        (
            "oversize id",
            Box::new(|| {
                coll.upsert(&[Record::new("x".repeat(513), vec![1.0; 4])])
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidId { .. }),
        ),
        (
            "metadata not an object",
            Box::new(|| {
                coll.upsert(&[good.clone().with_metadata(serde_json::json!("s"))])
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidMetadata { .. }),
        ),
        (
            "k = 0",
            Box::new(|| coll.search(&[1.0; 4], &SearchOptions::new(0)).map(drop)),
            |e| matches!(e, Error::InvalidSearch { .. }),
        ),
        (
            "absurd k",
            Box::new(|| {
                coll.search(&[1.0; 4], &SearchOptions::new(1_000_000_000))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidSearch { .. }),
        ),
        (
            "ef = 0",
            Box::new(|| {
                coll.search(&[1.0; 4], &SearchOptions::new(1).ef(0))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidSearch { .. }),
        ),
        (
            "query dimension",
            Box::new(|| coll.search(&[1.0; 3], &SearchOptions::new(1)).map(drop)),
            |e| matches!(e, Error::DimensionMismatch { .. }),
        ),
        (
            "query NaN",
            Box::new(|| {
                coll.search(&[f32::NAN; 4], &SearchOptions::new(1))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidVector { .. }),
        ),
        (
            "unknown collection",
            Box::new(|| store.get_collection("nope").map(drop)),
            |e| matches!(e, Error::NoSuchCollection { .. }),
        ),
        (
            "path traversal name",
            Box::new(|| {
                store
                    .create_collection("../x", &CollectionConfig::new(4))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidName { .. }),
        ),
        (
            "slash in name",
            Box::new(|| store.get_collection("a/b").map(drop)),
            |e| matches!(e, Error::InvalidName { .. }),
        ),
        (
            "empty name",
            Box::new(|| {
                store
                    .create_collection("", &CollectionConfig::new(4))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidName { .. }),
        ),
        (
            "65-char name",
            Box::new(|| {
                store
                    .create_collection(&"n".repeat(65), &CollectionConfig::new(4))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidName { .. }),
        ),
        (
            "existing name",
            Box::new(|| {
                store
                    .create_collection("c", &CollectionConfig::new(4))
                    .map(drop)
            }),
            |e| matches!(e, Error::CollectionExists { .. }),
        ),
        (
            "zero dimension",
            Box::new(|| {
                store
                    .create_collection("z", &CollectionConfig::new(0))
                    .map(drop)
            }),
            |e| matches!(e, Error::InvalidConfig { .. }),
        ),
        (
            "i8 with l2",
            Box::new(|| {
                let mut c = CollectionConfig::new(4);
                c.scalar = Scalar::I8;
                c.metric = Metric::L2;
                store.create_collection("z", &c).map(drop)
            }),
            |e| matches!(e, Error::InvalidConfig { .. }),
        ),
        (
            "alter to nonsense",
            Box::new(|| {
                coll.alter(&quiver::Alter {
                    connectivity: Some(0),
                    ..Default::default()
                })
                .map(drop)
            }),
            |e| matches!(e, Error::InvalidConfig { .. }),
        ),
    ];
    for (what, run, expected) in cases {
        let err = run().expect_err(what);
        assert!(expected(&err), "{what}: unexpected error {err:?}");
        assert!(
            err.is_bad_input(),
            "{what}: {err:?} should count as bad input"
        );
        assert!(
            !err.to_string().contains('\n'),
            "{what}: message is one line"
        );
        assert_eq!(fingerprint(&store), before, "{what} changed the store");
    }
}

#[test]
fn not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::NotAStore { .. })
    ));
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(Error::NotAStore { .. })
    ));
    // Nothing was created in the foreign directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(quiver::DB_FILE),
        "this is not sqlite at all, not even close......",
    )
    .unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::NotAStore { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let other = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
    other
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(other);
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::NotAStore { .. })
    ));

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(Store::open(&file), Err(Error::NotAStore { .. })));
}

#[test]
fn dropped_handle_is_an_error() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(2))
        .unwrap();
    assert!(store.drop_collection("c").unwrap());
    assert!(!store.drop_collection("c").unwrap());
    assert!(matches!(coll.count(), Err(Error::Dropped { .. })));
    assert!(matches!(
        coll.upsert(&[Record::new("a", vec![1.0, 0.0])]),
        Err(Error::Dropped { .. })
    ));
}
