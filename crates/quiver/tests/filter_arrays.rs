//! Arrays, patterns and quoted names in filters, checked against a model:
//! an evaluator of the filter tree over the records' JSON written from the
//! documented semantics (element by element on arrays, SQL's three values
//! for missing fields). Random filters run with no field index, then with
//! every field indexed, then after writes the index triggers must follow,
//! and after a reopen.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::cmp::Ordering;
use std::collections::BTreeSet;

use common::Rng;
use quiver::filter::{CmpOp, Field, Like, Value as Lit};
use quiver::{Collection, CollectionConfig, Filter, Record, Store};
use serde_json::{json, Value};

const DIM: usize = 4;
const TAGS: [&str; 6] = ["db", "billing", "pets", "Db", "a_b", "%"];
const PATHS: [&str; 8] = [
    "src/main.rs",
    "src/db/mod.rs",
    "src_old/x.rs",
    "docs/a%b.md",
    "docs/a_b.md",
    "SRC/UP.RS",
    "src/ü*?[x].rs",
    "",
];

/// A record's metadata: tags as an array (sometimes empty, sometimes a
/// scalar, a nested array or an object, sometimes missing or null), a
/// namespace, a path, numbers, and keys that need quoting.
fn metadata(rng: &mut Rng) -> Value {
    let pick =
        |rng: &mut Rng, from: &[&str]| from[rng.below(from.len() as u64) as usize].to_string();
    let mut m = serde_json::Map::new();
    let tags = match rng.below(10) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(pick(rng, &TAGS))),
        3 => Some(json!([])),
        4 => Some(json!({"db": 1})),
        5 => Some(json!([[pick(rng, &TAGS)], pick(rng, &TAGS), null, 3])),
        _ => {
            let n = 1 + rng.below(4);
            Some(Value::Array(
                (0..n).map(|_| json!(pick(rng, &TAGS))).collect(),
            ))
        }
    };
    if let Some(t) = tags {
        m.insert("tags".into(), t);
    }
    m.insert(
        "ns".into(),
        json!(["agent", "user", "team"][rng.below(3) as usize]),
    );
    if rng.below(8) != 0 {
        m.insert("path".into(), json!(pick(rng, &PATHS)));
    }
    let n = match rng.below(5) {
        0 => json!(rng.below(10)),
        1 => json!(rng.below(10) as f64 + 0.5),
        2 => json!([rng.below(10), rng.below(10)]),
        3 => json!(true),
        _ => json!("7"),
    };
    m.insert("n".into(), n);
    m.insert("file-path".into(), json!(pick(rng, &PATHS)));
    m.insert("a.b".into(), json!(rng.below(3)));
    m.insert("a".into(), json!({"b": rng.below(3)}));
    Value::Object(m)
}

// ---- the model ----

/// The values a filter compares: `None` when the field is missing, null
/// or an object (every comparison unknown); an array's scalar elements;
/// a scalar alone.
fn values(m: &Value, id: &str, field: &Field) -> Option<Vec<Value>> {
    let segs = match field {
        Field::Id => return Some(vec![json!(id)]),
        Field::Meta(segs) => segs,
    };
    let mut v = m;
    for s in segs {
        v = v.get(s)?;
    }
    match v {
        Value::Null | Value::Object(_) => None,
        Value::Array(xs) => Some(
            xs.iter()
                .filter(|x| !matches!(x, Value::Null | Value::Object(_) | Value::Array(_)))
                .cloned()
                .collect(),
        ),
        x => Some(vec![x.clone()]),
    }
}

/// SQLite's order of a JSON scalar against a literal: numbers (booleans as
/// 0 and 1) by value, text by bytes, every number below every text.
fn order(x: &Value, lit: &Lit) -> Ordering {
    let num = |x: &Value| match x {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    let lit_num = match lit {
        Lit::Int(n) => Some(*n as f64),
        Lit::Float(f) => Some(*f),
        Lit::Bool(b) => Some(f64::from(u8::from(*b))),
        Lit::Str(_) => None,
    };
    match (num(x), lit_num, x, lit) {
        (Some(a), Some(b), _, _) => a.partial_cmp(&b).unwrap(),
        (Some(_), None, _, _) => Ordering::Less,
        (None, Some(_), _, _) => Ordering::Greater,
        (None, None, Value::String(a), Lit::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        _ => unreachable!("a scalar is a number or a string"),
    }
}

/// `%` and `_` over characters, ASCII case folded when asked.
fn like_match(text: &[char], pat: &[Pat], fold: bool) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((Pat::Any, rest)) => (0..=text.len()).any(|i| like_match(&text[i..], rest, fold)),
        Some((Pat::One, rest)) => !text.is_empty() && like_match(&text[1..], rest, fold),
        Some((Pat::Char(c), rest)) => match text.split_first() {
            Some((t, more)) => {
                let same = if fold {
                    t.eq_ignore_ascii_case(c)
                } else {
                    t == c
                };
                same && like_match(more, rest, fold)
            }
            None => false,
        },
    }
}

enum Pat {
    Any,
    One,
    Char(char),
}

fn pattern(p: &str, escape: Option<char>) -> Vec<Pat> {
    let mut out = Vec::new();
    let mut cs = p.chars();
    while let Some(c) = cs.next() {
        if Some(c) == escape {
            out.push(Pat::Char(cs.next().unwrap()));
        } else if c == '%' {
            out.push(Pat::Any);
        } else if c == '_' {
            out.push(Pat::One);
        } else {
            out.push(Pat::Char(c));
        }
    }
    out
}

/// Kleene logic: `None` is unknown.
fn eval(f: &Filter, m: &Value, id: &str) -> Option<bool> {
    let any =
        |field: &Field, p: &dyn Fn(&Value) -> bool| values(m, id, field).map(|xs| xs.iter().any(p));
    match f {
        Filter::Cmp(field, op, lit) => {
            let hit = |x: &Value| {
                let o = order(x, lit);
                match op {
                    CmpOp::Eq | CmpOp::Ne => o == Ordering::Equal,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Le => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Ge => o != Ordering::Less,
                }
            };
            let r = any(field, &hit);
            if *op == CmpOp::Ne {
                r.map(|b| !b)
            } else {
                r
            }
        }
        Filter::Contains(field, lit) => any(field, &|x| order(x, lit) == Ordering::Equal),
        Filter::In(field, lits, neg) => {
            let r = any(field, &|x| {
                lits.iter().any(|l| order(x, l) == Ordering::Equal)
            });
            r.map(|b| b != *neg)
        }
        Filter::ContainsAny(field, lits) => any(field, &|x| {
            lits.iter().any(|l| order(x, l) == Ordering::Equal)
        }),
        Filter::ContainsAll(field, lits) => values(m, id, field).map(|xs| {
            lits.iter()
                .all(|l| xs.iter().any(|x| order(x, l) == Ordering::Equal))
        }),
        Filter::Like(field, like) => {
            let pat = pattern(&like.pattern, like.escape);
            let r = any(field, &|x| {
                x.as_str().is_some_and(|s| {
                    let chars: Vec<char> = s.chars().collect();
                    like_match(&chars, &pat, like.ignore_case)
                })
            });
            r.map(|b| b != like.negated)
        }
        Filter::StartsWith(field, prefix) => any(field, &|x| {
            x.as_str().is_some_and(|s| s.starts_with(prefix.as_str()))
        }),
        Filter::IsNull(field, neg) => {
            let segs = match field {
                Field::Id => return Some(*neg),
                Field::Meta(segs) => segs,
            };
            let mut v = Some(m);
            for s in segs {
                v = v.and_then(|v| v.get(s));
            }
            let null = matches!(v, None | Some(Value::Null));
            Some(null != *neg)
        }
        Filter::And(a, b) => match (eval(a, m, id), eval(b, m, id)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Filter::Or(a, b) => match (eval(a, m, id), eval(b, m, id)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Filter::Not(a) => eval(a, m, id).map(|b| !b),
    }
}

// ---- random filters ----

fn literal(rng: &mut Rng) -> Lit {
    match rng.below(6) {
        0..=2 => Lit::Str(TAGS[rng.below(TAGS.len() as u64) as usize].into()),
        3 => Lit::Int(rng.below(10) as i64),
        4 => Lit::Float(rng.below(10) as f64 + 0.5),
        _ => Lit::Str(["agent", "user", "7", "src/main.rs"][rng.below(4) as usize].into()),
    }
}

fn field(rng: &mut Rng) -> Field {
    let path = |p: &[&str]| Field::Meta(p.iter().map(|s| s.to_string()).collect());
    match rng.below(9) {
        0 | 1 => path(&["tags"]),
        2 => path(&["ns"]),
        3 => path(&["path"]),
        4 => path(&["n"]),
        5 => path(&["file-path"]),
        6 => path(&["a.b"]),
        7 => path(&["a", "b"]),
        _ => Field::Id,
    }
}

fn leaf(rng: &mut Rng) -> Filter {
    let f = field(rng);
    let list = |rng: &mut Rng| {
        (0..1 + rng.below(3))
            .map(|_| literal(rng))
            .collect::<Vec<_>>()
    };
    let ops = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];
    match rng.below(9) {
        0 | 1 => Filter::Cmp(f, ops[rng.below(6) as usize], literal(rng)),
        2 => Filter::In(f, list(rng), rng.below(2) == 0),
        3 => Filter::Contains(f, literal(rng)),
        4 => Filter::ContainsAny(f, list(rng)),
        5 => Filter::ContainsAll(f, list(rng)),
        6 => {
            let patterns = [
                "src/%",
                "%.rs",
                "docs/a!%b%",
                "%_b.md",
                "s_c%",
                "%",
                "src/ü*?[x]%",
                "db",
            ];
            let p = patterns[rng.below(patterns.len() as u64) as usize];
            let mut like = Like::new(p);
            like.escape = p.contains('!').then_some('!');
            like.ignore_case = rng.below(3) == 0;
            like.negated = rng.below(3) == 0;
            Filter::Like(f, like)
        }
        7 => {
            let prefixes = ["src/", "src", "docs/a", "", "d", "SRC/"];
            Filter::StartsWith(
                f,
                prefixes[rng.below(prefixes.len() as u64) as usize].into(),
            )
        }
        _ => Filter::IsNull(f, rng.below(2) == 0),
    }
}

fn filter(rng: &mut Rng, depth: u32) -> Filter {
    if depth == 0 || rng.below(3) == 0 {
        return leaf(rng);
    }
    match rng.below(3) {
        0 => filter(rng, depth - 1).and(filter(rng, depth - 1)),
        1 => filter(rng, depth - 1).or(filter(rng, depth - 1)),
        _ => filter(rng, depth - 1).not(),
    }
}

// ---- the test ----

fn check(coll: &Collection, model: &[(String, Value)], filters: &[Filter], stage: &str) {
    for f in filters {
        let want: BTreeSet<&str> = model
            .iter()
            .filter(|(id, m)| eval(f, m, id) == Some(true))
            .map(|(id, _)| id.as_str())
            .collect();
        // Through the text, as a user writes it.
        let parsed: Filter = f.to_string().parse().unwrap();
        assert_eq!(&parsed, f, "{f}");
        let got: BTreeSet<String> = coll
            .scan(Some(&parsed), None, 100_000)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(got, want, "{stage}: {f}");
        assert_eq!(
            coll.count_where(&parsed).unwrap(),
            want.len() as u64,
            "{stage}: {f}"
        );
    }
}

#[test]
fn array_pattern_and_quoted_filters_match_a_model_indexed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    let mut model: Vec<(String, Value)> = (0..400)
        .map(|i| (format!("m{i:03}"), metadata(&mut rng)))
        .collect();
    let records = |model: &[(String, Value)]| -> Vec<Record> {
        model
            .iter()
            .map(|(id, m)| Record::new(id.clone(), vec![1.0; DIM]).with_metadata(m.clone()))
            .collect()
    };
    let mut filters: Vec<Filter> = (0..300).map(|_| filter(&mut rng, 3)).collect();
    // The cases the issue names, spelled out.
    for text in [
        "tags CONTAINS 'db'",
        "tags CONTAINS ANY ('db', 'pets')",
        "tags CONTAINS ALL ('db', 'billing')",
        "tags = 'db'",
        "tags IN ('db', 'pets')",
        "tags != 'db'",
        "ns = 'agent' AND tags CONTAINS ANY ('db', 'pets')",
        "path LIKE 'src/%'",
        "path LIKE 'docs/a!%b%' ESCAPE '!'",
        "path ILIKE 'src/%'",
        "path NOT LIKE 'src/%'",
        "path STARTS WITH 'src/'",
        "\"file-path\" = 'src/main.rs'",
        "\"a.b\" = 1",
        "a.b = 1",
        "n > 5",
        "n = true",
    ] {
        filters.push(text.parse().unwrap());
    }
    let store = Store::open(dir.path()).unwrap();
    let coll = store
        .create_collection("mem", &CollectionConfig::new(DIM))
        .unwrap();
    coll.upsert(&records(&model)).unwrap();
    check(&coll, &model, &filters, "no field index");

    for path in ["tags", "ns", "path", "n", "\"file-path\"", "\"a.b\"", "a.b"] {
        assert!(coll.index_field(path).unwrap(), "{path}");
    }
    assert!(!coll.index_field("\"tags\"").unwrap(), "the same field");
    check(&coll, &model, &filters, "indexed");

    // Writes the triggers must follow: replaced metadata, new records,
    // deletes by id and by filter.
    for (i, entry) in model.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
        entry.1 = metadata(&mut rng);
        let _ = i;
    }
    let more: Vec<(String, Value)> = (0..60)
        .map(|i| (format!("n{i:02}"), metadata(&mut rng)))
        .collect();
    model.extend(more);
    coll.upsert(&records(&model)).unwrap();
    let gone: Vec<String> = model.iter().step_by(17).map(|(id, _)| id.clone()).collect();
    coll.delete(&gone).unwrap();
    model.retain(|(id, _)| !gone.contains(id));
    let doomed: Filter = "tags CONTAINS 'pets' AND ns = 'team'".parse().unwrap();
    let n = coll.delete_where(&doomed).unwrap();
    let before = model.len();
    model.retain(|(id, m)| eval(&doomed, m, id) != Some(true));
    assert_eq!(n, before - model.len());
    check(&coll, &model, &filters, "after writes");
    drop(coll);
    store.close().unwrap();

    let store = Store::open_read_only(dir.path()).unwrap();
    let coll = store.get_collection("mem").unwrap();
    check(&coll, &model, &filters, "reopened");
    let info = coll.info().unwrap();
    assert_eq!(
        info.indexed_fields,
        vec!["\"a.b\"", "\"file-path\"", "a.b", "n", "ns", "path", "tags"]
    );
}

#[test]
fn new_filter_syntax_errors_are_typed_with_columns() {
    for (text, needle, col) in [
        ("tags CONTAINS ANY ()", "unexpected token ')'", 20),
        ("tags CONTAINS ALL 'x'", "unexpected token string", 19),
        ("path LIKE 3", "a LIKE pattern must be a string", 11),
        ("path LIKE 'a!' ESCAPE '!'", "escape character", 11),
        ("path LIKE 'a' ESCAPE 'xy'", "single character", 22),
        ("path STARTS 'a'", "unexpected token string", 13),
        (
            "path STARTS WITH 1",
            "STARTS WITH prefix must be a string",
            18,
        ),
        ("\"open = 1", "unterminated field name", 1),
        ("\"\" = 1", "empty field name", 1),
        ("a.\"\" = 1", "empty field name", 3),
    ] {
        match text.parse::<Filter>() {
            Err(quiver::Error::InvalidFilter { reason, column }) => {
                assert!(reason.contains(needle), "{text}: {reason}");
                assert_eq!(column, Some(col), "{text}: {reason}");
            }
            other => panic!("{text}: expected an error, got {other:?}"),
        }
    }
    // A quoted "id" is a metadata key; a bare one the record id.
    assert_eq!(
        "\"id\" = 'x'".parse::<Filter>().unwrap(),
        Filter::Cmp(Field::Meta(vec!["id".into()]), CmpOp::Eq, "x".into())
    );
    assert_eq!(
        Filter::Cmp(Field::Meta(vec!["id".into()]), CmpOp::Eq, "x".into()).to_string(),
        "\"id\" = 'x'"
    );
    assert!(Filter::eq("a\"b", 1).validate().is_err());
}
