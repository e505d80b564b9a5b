//! Filters compiled to SQL over `records`, with every value and every
//! field path a bound parameter.
//!
//! A metadata comparison is made element by element when the field holds
//! an array (see the `filter` module for the semantics). On a field with
//! a field index it reads the index's entries (one per scalar and per
//! array element, and a marker for "present", kept by triggers: see
//! `schema`): `key IN (SELECT key FROM field_values WHERE ..)` outside a
//! negation, where the planner can drive the query from it, and inside one
//! `CASE WHEN <that> THEN 1 WHEN <marker> THEN 0 END`, SQL's three values
//! without reading the JSON. On any other field it reads the JSON:
//!
//! ```sql
//! CASE coalesce(json_type(metadata, ?p), 'null')
//!   WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, ?p)
//!                             WHERE type NOT IN ('object', 'array', 'null') AND value = ?v)
//!   WHEN 'object' THEN NULL WHEN 'null' THEN NULL
//!   ELSE json_extract(metadata, ?p) = ?v END
//! ```
//!
//! The plain index form is 0, never NULL, for a record without the field.
//! That is the same answer outside a negation (AND and OR are monotone, so
//! an unknown there can only end as not matching); inside one the `CASE`
//! keeps SQL's three values: `NOT x = 1` does not match a record without
//! `x`.

use rusqlite::types::Value as Sql;
use rusqlite::Connection;

use crate::error::{Result, SqlContext};
use crate::filter::{CmpOp, Field, Filter, Like, LikePart, Value};

/// A WHERE-clause fragment and its parameters, numbered from `first`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    pub(crate) sql: String,
    pub(crate) params: Vec<Sql>,
}

/// The SQL expression of a metadata path with the path as a literal, as an
/// expression index needs it (`'` doubled; a path holds no other quote
/// SQL reads).
pub(crate) fn path_expr(segs: &[String]) -> String {
    format!(
        "json_extract(metadata, '{}')",
        Field::json_path(segs).replace('\'', "''")
    )
}

fn value_sql(v: &Value) -> Sql {
    match v {
        Value::Str(s) => Sql::Text(s.clone()),
        Value::Int(n) => Sql::Integer(*n),
        Value::Float(x) => Sql::Real(*x),
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
    }
}

/// The JSON paths of collection `cid`'s field indexes.
fn indexed_paths(conn: &Connection, cid: i64) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT json_path FROM field_indexes WHERE cid = ?1")
        .during("list field indexes")?
        .query_map([cid], |r| r.get(0))
        .during("list field indexes")?
        .collect::<rusqlite::Result<Vec<String>>>()
        .during("list field indexes")
}

/// Compile a filter over collection `cid`'s records (validated on the
/// way); parameters are `?first`, `?first+1`, ...
///
/// # Errors
/// [`crate::Error::InvalidFilter`]; SQLite failures reading the field indexes.
pub(crate) fn compile(
    conn: &Connection,
    cid: i64,
    filter: &Filter,
    first: usize,
) -> Result<Compiled> {
    filter.validate()?;
    let mut c = Compiler {
        cid,
        indexed: indexed_paths(conn, cid)?,
        first,
        out: Compiled {
            sql: String::new(),
            params: Vec::new(),
        },
    };
    c.emit(filter, true);
    Ok(c.out)
}

/// What is compared with each value of a field: the SQL of a predicate
/// over the value expression it is given.
enum Pred {
    Cmp(&'static str, String),
    In(Vec<String>),
    Glob(String),
    Like(String),
    Range(String, Option<String>),
}

impl Pred {
    fn on(&self, v: &str) -> String {
        match self {
            Pred::Cmp(op, p) => format!("{v} {op} {p}"),
            Pred::In(ps) => format!("{v} IN ({})", ps.join(", ")),
            Pred::Glob(p) => format!("(typeof({v}) = 'text' AND {v} GLOB {p})"),
            Pred::Like(p) => format!("(typeof({v}) = 'text' AND {v} LIKE {p} ESCAPE '\\')"),
            Pred::Range(lo, Some(hi)) => {
                format!("(typeof({v}) = 'text' AND {v} >= {lo} AND {v} < {hi})")
            }
            Pred::Range(lo, None) => format!("(typeof({v}) = 'text' AND {v} >= {lo})"),
        }
    }
}

struct Compiler {
    cid: i64,
    indexed: Vec<String>,
    first: usize,
    out: Compiled,
}

impl Compiler {
    fn param(&mut self, v: Sql) -> String {
        self.out.params.push(v);
        format!("?{}", self.first + self.out.params.len() - 1)
    }

    fn push(&mut self, sql: &str) {
        self.out.sql.push_str(sql);
    }

    /// `NOT (inner)`, the inner part compiled for a negation.
    fn negated(&mut self, positive: bool, inner: &Filter) {
        self.push("NOT (");
        self.emit(inner, !positive);
        self.push(")");
    }

    /// `field` compared by `pred`: element by element for metadata.
    fn values(&mut self, field: &Field, positive: bool, pred: impl FnOnce(&mut Self) -> Pred) {
        let segs = match field {
            Field::Id => {
                let p = pred(self);
                self.push(&p.on("id"));
                return;
            }
            Field::Meta(segs) => segs,
        };
        let json_path = Field::json_path(segs);
        let indexed = self.indexed.contains(&json_path);
        let path = self.param(Sql::Text(json_path));
        let p = pred(self);
        let cid = self.cid;
        let matching = |p: &Pred| {
            format!(
                "key IN (SELECT key FROM field_values WHERE cid = {cid} AND path = {path} \
                 AND {} AND value < x'')",
                p.on("value")
            )
        };
        let sql = if indexed && positive {
            matching(&p)
        } else if indexed {
            // Three values from the entries alone: the marker row says the
            // field is present.
            format!(
                "CASE WHEN {} THEN 1 WHEN key IN (SELECT key FROM field_values \
                 WHERE cid = {cid} AND path = {path} AND value = x'') THEN 0 END",
                matching(&p)
            )
        } else {
            format!(
                "CASE coalesce(json_type(metadata, {path}), 'null') \
                 WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, {path}) \
                 WHERE type NOT IN ('object', 'array', 'null') AND {}) \
                 WHEN 'object' THEN NULL WHEN 'null' THEN NULL ELSE {} END",
                p.on("value"),
                p.on(&format!("json_extract(metadata, {path})"))
            )
        };
        self.push(&sql);
    }

    fn emit(&mut self, f: &Filter, positive: bool) {
        match f {
            Filter::Cmp(field, CmpOp::Ne, v) if *field != Field::Id => {
                self.negated(positive, &Filter::Cmp(field.clone(), CmpOp::Eq, v.clone()));
            }
            Filter::Cmp(field, op, v) => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::Ne => "<>",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                self.values(field, positive, |c| Pred::Cmp(op, c.param(value_sql(v))));
            }
            Filter::Contains(field, v) => {
                self.values(field, positive, |c| Pred::Cmp("=", c.param(value_sql(v))));
            }
            Filter::In(field, vs, true) => {
                self.negated(positive, &Filter::In(field.clone(), vs.clone(), false));
            }
            Filter::In(field, vs, false) | Filter::ContainsAny(field, vs) => {
                self.values(field, positive, |c| {
                    Pred::In(vs.iter().map(|v| c.param(value_sql(v))).collect())
                });
            }
            Filter::ContainsAll(field, vs) => {
                self.push("(");
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        self.push(" AND ");
                    }
                    self.values(field, positive, |c| Pred::Cmp("=", c.param(value_sql(v))));
                }
                self.push(")");
            }
            Filter::Like(field, like) if like.negated => {
                let positive_like = Like {
                    negated: false,
                    ..like.clone()
                };
                self.negated(positive, &Filter::Like(field.clone(), positive_like));
            }
            Filter::Like(field, like) => {
                // Checked by `validate`.
                let parts = like.parts().unwrap_or_default();
                self.values(field, positive, |c| {
                    if like.ignore_case {
                        Pred::Like(c.param(Sql::Text(like_pattern(&parts))))
                    } else {
                        Pred::Glob(c.param(Sql::Text(glob_pattern(&parts))))
                    }
                });
            }
            Filter::StartsWith(field, prefix) => {
                self.values(field, positive, |c| {
                    let lo = c.param(Sql::Text(prefix.clone()));
                    let hi = prefix_end(prefix).map(|hi| c.param(Sql::Text(hi)));
                    Pred::Range(lo, hi)
                });
            }
            Filter::IsNull(field, negated) => {
                let not = if *negated { "NOT " } else { "" };
                let expr = match field {
                    Field::Id => "id".to_string(),
                    Field::Meta(segs) => {
                        let path = self.param(Sql::Text(Field::json_path(segs)));
                        format!("json_extract(metadata, {path})")
                    }
                };
                self.push(&format!("{expr} IS {not}NULL"));
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                let word = if matches!(f, Filter::And(..)) {
                    " AND "
                } else {
                    " OR "
                };
                self.push("(");
                self.emit(a, positive);
                self.push(word);
                self.emit(b, positive);
                self.push(")");
            }
            Filter::Not(a) => self.negated(positive, a),
        }
    }
}

/// A case-sensitive `LIKE` as a GLOB pattern: `%` is `*`, `_` is `?`, and
/// GLOB's own `*`, `?` and `[` are bracketed to stay literal.
fn glob_pattern(parts: &[LikePart]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            LikePart::Any => out.push('*'),
            LikePart::One => out.push('?'),
            LikePart::Char(c @ ('*' | '?' | '[')) => {
                out.push('[');
                out.push(*c);
                out.push(']');
            }
            LikePart::Char(c) => out.push(*c),
        }
    }
    out
}

/// An `ILIKE` as SQLite's LIKE (ASCII case-insensitive) with `\` escaping.
fn like_pattern(parts: &[LikePart]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            LikePart::Any => out.push('%'),
            LikePart::One => out.push('_'),
            LikePart::Char(c @ ('%' | '_' | '\\')) => {
                out.push('\\');
                out.push(*c);
            }
            LikePart::Char(c) => out.push(*c),
        }
    }
    out
}

/// The least string above every string that starts with `prefix` (text
/// compares by code point): its last character that has a successor,
/// raised by one, and the rest dropped. `None` when every string from
/// `prefix` up starts with it (a prefix of U+10FFFF only).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if next == 0xD800 {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::schema::migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn compiles_to_parameters_only() {
        let conn = conn();
        let f: Filter =
            "lang = 'x''); DROP TABLE records; --' AND \"n')--\" IN (1, 2.5, true) OR NOT id IS NULL"
                .parse()
                .unwrap();
        let c = compile(&conn, 1, &f, 2).unwrap();
        assert!(
            !c.sql.contains("DROP") && !c.sql.contains("')--"),
            "{}",
            c.sql
        );
        assert_eq!(c.params.len(), 6, "two paths, four values");
        assert_eq!(c.params[0], Sql::Text("$.lang".into()));
        assert_eq!(c.params[2], Sql::Text("$.\"n')--\"".into()));
        assert!(c
            .sql
            .starts_with("((CASE coalesce(json_type(metadata, ?2), 'null')"));
    }

    #[test]
    fn an_indexed_field_is_read_from_its_entries_outside_a_negation() {
        let conn = conn();
        conn.execute_batch(
            "INSERT INTO field_indexes (cid, path, json_path) VALUES (1, 'tags', '$.tags')",
        )
        .unwrap();
        let plan = |text: &str| -> (String, String) {
            let c = compile(&conn, 1, &text.parse().unwrap(), 2).unwrap();
            let mut params = vec![Sql::Integer(1)];
            params.extend(c.params);
            let sql = format!("SELECT key FROM records WHERE cid = ?1 AND ({})", c.sql);
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (c.sql, plan.join("; "))
        };
        for text in [
            "tags = 'db'",
            "tags CONTAINS ANY ('db', 'pets')",
            "tags STARTS WITH 'd'",
            "tags > 3 AND other = 1",
        ] {
            let (sql, plan) = plan(text);
            assert!(sql.contains("field_values"), "{text}: {sql}");
            assert!(plan.contains("field_values"), "{text}: {plan}");
        }
        // Negated: the entries and the marker, never the JSON.
        for text in ["tags != 'db'", "NOT tags STARTS WITH 'd'"] {
            let (sql, _) = plan(text);
            assert!(sql.contains("CASE WHEN key IN"), "{text}: {sql}");
            assert!(!sql.contains("json_"), "{text}: {sql}");
        }
        // Unindexed: the JSON.
        let (sql, _) = plan("other = 'db'");
        assert!(
            !sql.contains("field_values") && sql.contains("json_each"),
            "{sql}"
        );
    }

    #[test]
    fn like_patterns_translate_with_wildcards_and_escapes() {
        let parts = |p: &str, e: Option<char>| {
            Like {
                pattern: p.into(),
                escape: e,
                ignore_case: false,
                negated: false,
            }
            .parts()
            .unwrap()
        };
        assert_eq!(glob_pattern(&parts("src/%.r_", None)), "src/*.r?");
        assert_eq!(glob_pattern(&parts("a*b?[c]", None)), "a[*]b[?][[]c]");
        assert_eq!(glob_pattern(&parts("100!%!!", Some('!'))), "100%!");
        assert_eq!(like_pattern(&parts("a\\b%_", None)), "a\\\\b%_");
        assert_eq!(like_pattern(&parts("5#%", Some('#'))), "5\\%");
        assert!(Like {
            pattern: "a!".into(),
            escape: Some('!'),
            ignore_case: false,
            negated: false
        }
        .parts()
        .is_err());
        assert_eq!(prefix_end("src/"), Some("src0".into()));
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_end("\u{D7FF}"), Some("\u{E000}".into()));
        assert_eq!(prefix_end(""), None);
    }
}
