//! Filters compiled to SQL over `records`, with every value a bound
//! parameter.
//!
//! Field paths are the one piece of filter text that reaches SQL text:
//! `json_extract(metadata, '$.a.b')` must carry its path as a literal for
//! SQLite to match it against a field index (an index on an expression is
//! used only for the same expression, and a bound parameter is not the same).
//! Paths are checked to be dotted `[A-Za-z_][A-Za-z0-9_]*` names first, so
//! no quote, bracket or operator can get through.

use rusqlite::types::Value as Sql;

use crate::error::Result;
use crate::filter::{CmpOp, Field, Filter, Value};

/// A WHERE-clause fragment and its parameters, numbered from `first`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    pub(crate) sql: String,
    pub(crate) params: Vec<Sql>,
}

/// The SQL expression of a metadata path; also used to create field indexes.
pub(crate) fn path_expr(segs: &[String]) -> String {
    format!("json_extract(metadata, '$.{}')", segs.join("."))
}

fn field_sql(f: &Field) -> String {
    match f {
        Field::Id => "id".into(),
        Field::Meta(segs) => path_expr(segs),
    }
}

fn value_sql(v: &Value) -> Sql {
    match v {
        Value::Str(s) => Sql::Text(s.clone()),
        Value::Int(n) => Sql::Integer(*n),
        Value::Float(x) => Sql::Real(*x),
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
    }
}

/// Compile a validated-on-the-way filter; parameters are `?first`, `?first+1`, ...
pub(crate) fn compile(filter: &Filter, first: usize) -> Result<Compiled> {
    filter.validate()?;
    let mut out = Compiled {
        sql: String::new(),
        params: Vec::new(),
    };
    emit(filter, first, &mut out);
    Ok(out)
}

fn param(v: &Value, first: usize, out: &mut Compiled) -> String {
    out.params.push(value_sql(v));
    format!("?{}", first + out.params.len() - 1)
}

fn emit(f: &Filter, first: usize, out: &mut Compiled) {
    match f {
        Filter::Cmp(field, op, v) => {
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "<>",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            };
            let p = param(v, first, out);
            out.sql.push_str(&format!("{} {op} {p}", field_sql(field)));
        }
        Filter::In(field, vs, negated) => {
            let ps: Vec<String> = vs.iter().map(|v| param(v, first, out)).collect();
            let not = if *negated { "NOT " } else { "" };
            out.sql
                .push_str(&format!("{} {not}IN ({})", field_sql(field), ps.join(", ")));
        }
        Filter::IsNull(field, negated) => {
            let not = if *negated { "NOT " } else { "" };
            out.sql
                .push_str(&format!("{} IS {not}NULL", field_sql(field)));
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            let word = if matches!(f, Filter::And(..)) {
                " AND "
            } else {
                " OR "
            };
            out.sql.push('(');
            emit(a, first, out);
            out.sql.push_str(word);
            emit(b, first, out);
            out.sql.push(')');
        }
        Filter::Not(a) => {
            out.sql.push_str("NOT (");
            emit(a, first, out);
            out.sql.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_to_parameters_only() {
        let f: Filter =
            "lang = 'x''); DROP TABLE records; --' AND n IN (1, 2.5, true) OR NOT id IS NULL"
                .parse()
                .unwrap();
        let c = compile(&f, 2).unwrap();
        assert_eq!(
            c.sql,
            "((json_extract(metadata, '$.lang') = ?2 AND json_extract(metadata, '$.n') IN (?3, ?4, ?5)) OR NOT (id IS NULL))"
        );
        assert_eq!(c.params.len(), 4);
        assert!(!c.sql.contains("DROP"));
    }
}
