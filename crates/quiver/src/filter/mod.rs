//! Metadata filters: an expression language, a typed builder, and their
//! compilation to parameterised SQL.
//!
//! ```text
//! language = 'go' AND start_line >= 10 AND tag IN ('a', 'b')
//! NOT (author.name IS NULL) OR id = 'doc-7'
//! ```
//!
//! Fields are dotted paths into the metadata object (`a.b.c`), or `id`, the
//! record id. Values are single-quoted strings (`''` escapes a quote),
//! integers, floats and `true`/`false`. Operators: `= != < <= > >=`,
//! `IN (..)`, `NOT IN (..)`, `IS NULL`, `IS NOT NULL`, `AND`, `OR`, `NOT`,
//! parentheses. Comparisons follow SQL: a record without the field (or with
//! JSON null there) matches neither `x = v` nor `x != v`, only `x IS NULL`.
//!
//! The same filter can be built in Rust:
//!
//! ```
//! use quiver::Filter;
//! let f = Filter::eq("language", "go").and(Filter::ge("start_line", 10));
//! assert_eq!(f, "language = 'go' AND start_line >= 10".parse().unwrap());
//! assert_eq!(f.to_string(), "language = 'go' AND start_line >= 10");
//! ```

mod parse;

use std::fmt;

use crate::error::Error;

/// A field a filter reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// The record id.
    Id,
    /// A path into the metadata object: `["author", "name"]` for `author.name`.
    /// Each segment is `[A-Za-z_][A-Za-z0-9_]*`.
    Meta(Vec<String>),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
    /// A boolean (JSON `true`/`false`; SQLite reads them as 1/0).
    Bool(bool),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A filter expression. Parse one with [`str::parse`] or build it with the
/// constructors; [`fmt::Display`] prints text that parses back to the same filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `field op value`
    Cmp(Field, CmpOp, Value),
    /// `field IN (..)` or, negated, `field NOT IN (..)`; never empty.
    In(Field, Vec<Value>, bool),
    /// `field IS NULL` or, negated, `field IS NOT NULL`.
    IsNull(Field, bool),
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Not.
    Not(Box<Filter>),
}

impl Field {
    /// `"id"` is the record id; anything else a dotted metadata path.
    /// Invalid paths are reported when the filter is used.
    pub fn parse_path(path: &str) -> Field {
        if path == "id" {
            Field::Id
        } else {
            Field::Meta(path.split('.').map(String::from).collect())
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if let Field::Meta(segs) = self {
            if segs.is_empty() || !segs.iter().all(|s| is_ident(s)) {
                return Err(format!(
                    "invalid field {:?}: use dotted names of letters, digits and _",
                    segs.join(".")
                ));
            }
        }
        Ok(())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Int(n.into())
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(n.into())
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

macro_rules! cmp_ctor {
    ($($name:ident => $op:ident, $doc:literal;)+) => {$(
        #[doc = $doc]
        pub fn $name(field: &str, value: impl Into<Value>) -> Filter {
            Filter::Cmp(Field::parse_path(field), CmpOp::$op, value.into())
        }
    )+};
}

impl Filter {
    cmp_ctor! {
        eq => Eq, "`field = value`";
        ne => Ne, "`field != value`";
        lt => Lt, "`field < value`";
        le => Le, "`field <= value`";
        gt => Gt, "`field > value`";
        ge => Ge, "`field >= value`";
    }

    /// `field IN (values)`.
    pub fn is_in<V: Into<Value>>(field: &str, values: impl IntoIterator<Item = V>) -> Filter {
        Filter::In(
            Field::parse_path(field),
            values.into_iter().map(Into::into).collect(),
            false,
        )
    }

    /// `field NOT IN (values)`.
    pub fn not_in<V: Into<Value>>(field: &str, values: impl IntoIterator<Item = V>) -> Filter {
        Filter::In(
            Field::parse_path(field),
            values.into_iter().map(Into::into).collect(),
            true,
        )
    }

    /// `field IS NULL` (missing or JSON null).
    pub fn is_null(field: &str) -> Filter {
        Filter::IsNull(Field::parse_path(field), false)
    }

    /// `field IS NOT NULL`.
    pub fn is_not_null(field: &str) -> Filter {
        Filter::IsNull(Field::parse_path(field), true)
    }

    /// `self AND other`.
    pub fn and(self, other: Filter) -> Filter {
        Filter::And(Box::new(self), Box::new(other))
    }

    /// `self OR other`.
    pub fn or(self, other: Filter) -> Filter {
        Filter::Or(Box::new(self), Box::new(other))
    }

    /// `NOT self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }

    /// Check what the builder cannot: field paths, finite floats, non-empty lists.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] naming the problem.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| {
            Err(Error::InvalidFilter {
                reason,
                column: None,
            })
        };
        let value_ok = |v: &Value| match v {
            Value::Float(x) if !x.is_finite() => Err(format!("{x} is not a finite number")),
            _ => Ok(()),
        };
        match self {
            Filter::Cmp(f, _, v) => {
                f.check().or_else(bad)?;
                value_ok(v).or_else(bad)
            }
            Filter::In(f, vs, _) => {
                f.check().or_else(bad)?;
                if vs.is_empty() {
                    return bad("IN needs at least one value".into());
                }
                vs.iter().try_for_each(|v| value_ok(v).or_else(bad))
            }
            Filter::IsNull(f, _) => f.check().or_else(bad),
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.validate()?;
                b.validate()
            }
            Filter::Not(a) => a.validate(),
        }
    }
}

/// A path segment: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Id => f.write_str("id"),
            Field::Meta(segs) => f.write_str(&segs.join(".")),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Value::Int(n) => write!(f, "{n}"),
            // `{:?}` prints the shortest text that reads back to the same f64,
            // always with a '.' or an exponent, so it lexes as a float.
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parentheses only where the tree needs them (OR under AND, a right
        // operand of the same operator, AND/OR under NOT): the printed text
        // then never nests deeper than any text that parses to this tree,
        // so it parses back within the parser's depth limit.
        fn wrapped(x: &Filter, paren: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if paren {
                write!(f, "({x})")
            } else {
                write!(f, "{x}")
            }
        }
        let compound = |x: &Filter| matches!(x, Filter::And(..) | Filter::Or(..));
        match self {
            Filter::Cmp(field, op, v) => write!(f, "{field} {op} {v}"),
            Filter::In(field, vs, neg) => {
                let list: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                let not = if *neg { "NOT " } else { "" };
                write!(f, "{field} {not}IN ({})", list.join(", "))
            }
            Filter::IsNull(field, neg) => {
                write!(f, "{field} IS {}NULL", if *neg { "NOT " } else { "" })
            }
            Filter::And(a, b) => {
                wrapped(a, matches!(**a, Filter::Or(..)), f)?;
                f.write_str(" AND ")?;
                wrapped(b, compound(b), f)
            }
            Filter::Or(a, b) => {
                wrapped(a, false, f)?;
                f.write_str(" OR ")?;
                wrapped(b, matches!(**b, Filter::Or(..)), f)
            }
            Filter::Not(a) => {
                f.write_str("NOT ")?;
                wrapped(a, compound(a), f)
            }
        }
    }
}

/// Check a path given to `index_field`.
pub(crate) fn check_path(path: &str) -> Result<Vec<String>, Error> {
    let field = Field::parse_path(path);
    match field {
        Field::Id => Err(Error::InvalidFilter {
            reason: "id is the record id, indexed already".into(),
            column: None,
        }),
        Field::Meta(segs) => {
            Field::Meta(segs.clone())
                .check()
                .map_err(|reason| Error::InvalidFilter {
                    reason,
                    column: None,
                })?;
            Ok(segs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(p: &str) -> Field {
        Field::parse_path(p)
    }

    fn cmp(p: &str, op: CmpOp, v: impl Into<Value>) -> Filter {
        Filter::Cmp(meta(p), op, v.into())
    }

    #[test]
    fn valid_expressions_parse_to_the_expected_trees() {
        use CmpOp::*;
        let table: Vec<(&str, Filter)> = vec![
            ("a = 1", cmp("a", Eq, 1)),
            ("a == 'x'", cmp("a", Eq, "x")),
            ("a != -2.5", cmp("a", Ne, -2.5)),
            ("a <> 3", cmp("a", Ne, 3)),
            ("a.b.c < 1e3", cmp("a.b.c", Lt, 1000.0)),
            ("x <= .5", cmp("x", Le, 0.5)),
            ("x > true", cmp("x", Gt, true)),
            ("x >= FALSE", cmp("x", Ge, false)),
            ("s = 'it''s'", cmp("s", Eq, "it's")),
            ("s = ''", cmp("s", Eq, "")),
            ("id = 'doc-1'", Filter::Cmp(Field::Id, Eq, "doc-1".into())),
            ("tag IN ('a', 'b')", Filter::is_in("tag", ["a", "b"])),
            ("tag not in (1,2)", Filter::not_in("tag", [1, 2])),
            ("t IS NULL", Filter::is_null("t")),
            ("t is not null", Filter::is_not_null("t")),
            (
                "a = 1 AND b = 2 OR c = 3",
                cmp("a", Eq, 1).and(cmp("b", Eq, 2)).or(cmp("c", Eq, 3)),
            ),
            (
                "a = 1 OR b = 2 AND c = 3",
                cmp("a", Eq, 1).or(cmp("b", Eq, 2).and(cmp("c", Eq, 3))),
            ),
            (
                "a = 1 AND (b = 2 OR c = 3)",
                cmp("a", Eq, 1).and(cmp("b", Eq, 2).or(cmp("c", Eq, 3))),
            ),
            (
                "NOT a = 1 AND b = 2",
                cmp("a", Eq, 1).not().and(cmp("b", Eq, 2)),
            ),
            (
                "not (a = 1 and b = 2)",
                cmp("a", Eq, 1).and(cmp("b", Eq, 2)).not(),
            ),
            ("NOT NOT a = 1", cmp("a", Eq, 1).not().not()),
            ("((a = 1))", cmp("a", Eq, 1)),
            ("_x9 = 9223372036854775807", cmp("_x9", Eq, i64::MAX)),
            ("n = -9223372036854775808", cmp("n", Eq, i64::MIN)),
        ];
        for (text, want) in table {
            let got: Filter = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn invalid_expressions_name_the_column() {
        let table: &[(&str, &str, usize)] = &[
            ("language = 'go' )", "unexpected token ')'", 17),
            ("", "empty filter", 1),
            ("a =", "unexpected token end of input", 4),
            ("a = 'open", "unterminated string", 5),
            ("a = 1 AND", "unexpected token end of input", 10),
            ("a = 1 b = 2", "unexpected token 'b'", 7),
            ("= 1", "unexpected token '='", 1),
            ("a IN ()", "unexpected token ')'", 7),
            ("a IN (1,)", "unexpected token ')'", 9),
            ("a IS 1", "unexpected token number 1", 6),
            ("a NOT 1", "unexpected token number 1", 7),
            ("a = 1; DROP TABLE records", "unexpected character ';'", 6),
            ("a = \"x\"", "unexpected character '\"'", 5),
            (
                "a IS 'two\nlines'",
                "unexpected token string 'two\\nlines'",
                6,
            ),
            ("a = 99999999999999999999", "out of range", 5),
            ("a.  = 1", "unexpected token '='", 5),
            ("and = 1", "unexpected token 'and'", 1),
            ("(a = 1", "unexpected token end of input", 7),
            ("a = 1e999", "out of range", 5),
        ];
        for (text, needle, col) in table {
            match text.parse::<Filter>() {
                Err(Error::InvalidFilter { reason, column }) => {
                    assert!(reason.contains(needle), "{text}: {reason}");
                    assert_eq!(column, Some(*col), "{text}: {reason}");
                }
                other => panic!("{text}: expected an error, got {other:?}"),
            }
        }
        let e = "language = 'go' )".parse::<Filter>().unwrap_err();
        assert_eq!(e.to_string(), "invalid filter: unexpected token ')' at 17");
        let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
        assert!(deep.parse::<Filter>().is_err());
        // Whatever parses prints back to text that parses (found by hand
        // beside the fuzzer: NOT chains used to print two levels per NOT).
        for text in [
            format!("{}a = 1", "NOT ".repeat(120)),
            format!("{}a = 1{}", "(NOT ".repeat(60), ")".repeat(60)),
            "a = 1 AND b = 2 OR c = 3 AND NOT (d = 4 OR e = 5)".to_string(),
        ] {
            let f: Filter = text.parse().unwrap();
            assert_eq!(f.to_string().parse::<Filter>().unwrap(), f, "{text}");
        }
    }

    #[test]
    fn builder_errors_surface_in_validate() {
        assert!(Filter::eq("a b", 1).validate().is_err());
        assert!(Filter::eq("a..b", 1).validate().is_err());
        assert!(Filter::eq("x", f64::NAN).validate().is_err());
        assert!(Filter::is_in("x", Vec::<i64>::new()).validate().is_err());
        assert!(Filter::eq("a.b", 1).validate().is_ok());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = Field> {
            prop_oneof![
                1 => Just(Field::Id),
                4 => prop::collection::vec("[a-z_][a-z0-9_]{0,5}", 1..3)
                    .prop_filter("not a keyword", |segs| !segs.iter().any(|s| {
                        ["and", "or", "not", "in", "is", "null", "true", "false"].contains(&s.as_str())
                    }))
                    .prop_map(|segs| if segs == ["id"] { Field::Id } else { Field::Meta(segs) }),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                ".{0,8}".prop_map(Value::Str),
                any::<i64>().prop_map(Value::Int),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(Value::Float),
                any::<bool>().prop_map(Value::Bool),
            ]
        }

        fn op() -> impl Strategy<Value = CmpOp> {
            prop_oneof![
                Just(CmpOp::Eq),
                Just(CmpOp::Ne),
                Just(CmpOp::Lt),
                Just(CmpOp::Le),
                Just(CmpOp::Gt),
                Just(CmpOp::Ge),
            ]
        }

        fn filter() -> impl Strategy<Value = Filter> {
            let leaf = prop_oneof![
                (field(), op(), value()).prop_map(|(f, o, v)| Filter::Cmp(f, o, v)),
                (field(), prop::collection::vec(value(), 1..4), any::<bool>())
                    .prop_map(|(f, vs, n)| Filter::In(f, vs, n)),
                (field(), any::<bool>()).prop_map(|(f, n)| Filter::IsNull(f, n)),
            ];
            leaf.prop_recursive(5, 32, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
                    inner.prop_map(Filter::not),
                ]
            })
        }

        proptest! {
            #[test]
            fn print_then_parse_is_identity(f in filter()) {
                let text = f.to_string();
                let back: Filter = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                prop_assert_eq!(back, f, "{}", text);
            }

            #[test]
            fn parser_never_panics_and_errors_are_one_line(s in "(.|\n|\r){0,60}") {
                if let Err(e) = s.parse::<Filter>() {
                    let msg = e.to_string();
                    prop_assert!(!msg.contains('\n') && !msg.contains('\r'), "{:?}", msg);
                }
            }
        }
    }
}
