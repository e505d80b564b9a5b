#![cfg(feature = "embed")]
#![allow(clippy::unwrap_used)]
use quiver::embed::{Embedder, SentenceEmbedder};
#[test]
fn bench() {
    let m = SentenceEmbedder::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.cache/models/all-MiniLM-L6-v2"
    ))
    .unwrap();
    let body = std::fs::read_to_string("/work/shared/data/pypi-minilm-20k/queries.jsonl").unwrap();
    let texts: Vec<String> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let toks: usize = refs.iter().map(|t| m.tokenize(t).len()).sum();
    println!(
        "{} texts, {} tokens, mean {:.1}",
        refs.len(),
        toks,
        toks as f64 / refs.len() as f64
    );
    let t = std::time::Instant::now();
    for t in &refs {
        std::hint::black_box(m.tokenize(t));
    }
    println!("tokenize: {:?}", t.elapsed());
    let _ = m.embed(&refs[..50]).unwrap();
    for threads in [2usize, 1] {
        let mm = if threads == 1 {
            SentenceEmbedder::load(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.cache/models/all-MiniLM-L6-v2"
            ))
            .unwrap()
            .with_threads(1)
        } else {
            SentenceEmbedder::load(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.cache/models/all-MiniLM-L6-v2"
            ))
            .unwrap()
        };
        let t = std::time::Instant::now();
        let v = mm.embed(&refs).unwrap();
        let e = t.elapsed();
        println!(
            "threads {threads}: batch of 1000: {:?} -> {:.1} texts/s",
            e,
            1000.0 / e.as_secs_f64()
        );
        assert_eq!(v.len(), 1000);
    }
    let t = std::time::Instant::now();
    for chunk in refs.chunks(32) {
        m.embed(chunk).unwrap();
    }
    let e = t.elapsed();
    println!(
        "batches of 32: {:?} -> {:.1} texts/s",
        e,
        1000.0 / e.as_secs_f64()
    );
    let t = std::time::Instant::now();
    for r in &refs[..200] {
        m.embed(&[r]).unwrap();
    }
    let e = t.elapsed();
    println!(
        "one at a time (200): {:?} -> {:.1} texts/s",
        e,
        200.0 / e.as_secs_f64()
    );
}
