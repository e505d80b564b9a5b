//! Lexer and recursive-descent parser for filter text. Errors carry the
//! 1-based character column where the problem starts.

use std::str::FromStr;

use super::{CmpOp, Field, Filter, Like, Value, KEYWORDS};
use crate::error::Error;

/// Longest filter text accepted, and deepest nesting: bounds on work and
/// on recursion for hostile input.
const MAX_LEN: usize = 64 * 1024;
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A double-quoted field name segment.
    Quoted(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    Dot,
    End,
}

type Spanned = (Tok, usize);
pub(super) type ParseError = (String, usize);

/// User text echoed in an error: escaped (so the message stays on one
/// line) and cut to 40 characters.
fn quote(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    let text = format!("{cut:?}");
    let text = &text[1..text.len() - 1];
    if cut.len() < s.len() {
        format!("'{text}...'")
    } else {
        format!("'{text}'")
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => quote(s),
        Tok::Quoted(s) => format!("field {}", quote(s)),
        Tok::Str(s) => format!("string {}", quote(s)),
        Tok::Int(n) => format!("number {n}"),
        Tok::Float(x) => format!("number {x}"),
        Tok::Op(op) => format!("'{op}'"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Dot => "'.'".into(),
        Tok::End => "end of input".into(),
    }
}

fn lex(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = |n: char| chars.get(i + 1) == Some(&n);
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '=' if two('=') => (Tok::Op(CmpOp::Eq), 2),
            '=' => (Tok::Op(CmpOp::Eq), 1),
            '!' if two('=') => (Tok::Op(CmpOp::Ne), 2),
            '<' if two('>') => (Tok::Op(CmpOp::Ne), 2),
            '<' if two('=') => (Tok::Op(CmpOp::Le), 2),
            '<' => (Tok::Op(CmpOp::Lt), 1),
            '>' if two('=') => (Tok::Op(CmpOp::Ge), 2),
            '>' => (Tok::Op(CmpOp::Gt), 1),
            '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(("unterminated string".into(), col)),
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            s.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s), j + 1 - i)
            }
            '"' => {
                let Some(len) = chars[i + 1..].iter().position(|&ch| ch == '"') else {
                    return Err(("unterminated field name".into(), col));
                };
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                if name.is_empty() {
                    return Err(("empty field name".into(), col));
                }
                if name.chars().any(char::is_control) {
                    return Err(("control character in a field name".into(), col));
                }
                (Tok::Quoted(name), len + 2)
            }
            c if c.is_ascii_digit()
                || c == '-'
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                let mut j = i + usize::from(c == '-');
                let mut float = false;
                while j < chars.len() {
                    let d = chars[j];
                    if d.is_ascii_digit() {
                        j += 1;
                    } else if d == '.'
                        && !float
                        && chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())
                    {
                        float = true;
                        j += 1;
                    } else if (d == 'e' || d == 'E')
                        && (chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())
                            || (matches!(chars.get(j + 1), Some('+' | '-'))
                                && chars.get(j + 2).is_some_and(|d| d.is_ascii_digit())))
                    {
                        float = true;
                        j += 2;
                    } else {
                        break;
                    }
                }
                let lit: String = chars[start..j].iter().collect();
                if lit == "-" {
                    return Err(("unexpected token '-'".into(), col));
                }
                let tok = if float {
                    match lit.parse::<f64>() {
                        Ok(x) if x.is_finite() => Tok::Float(x),
                        _ => return Err((format!("number {lit} is out of range"), col)),
                    }
                } else {
                    match lit.parse::<i64>() {
                        Ok(n) => Tok::Int(n),
                        Err(_) => return Err((format!("integer {lit} is out of range"), col)),
                    }
                };
                (tok, j - start)
            }
            '.' => (Tok::Dot, 1),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                (Tok::Ident(chars[i..j].iter().collect()), j - i)
            }
            other => return Err((format!("unexpected character {other:?}"), col)),
        };
        out.push((tok, col));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
    depth: usize,
}

fn keyword(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> &Spanned {
        &self.toks[self.pos]
    }

    fn next(&mut self) -> Spanned {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn unexpected<T>(&self) -> Result<T, ParseError> {
        let (t, col) = self.peek();
        Err((format!("unexpected token {}", describe(t)), *col))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if keyword(&self.peek().0, kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok) -> Result<(), ParseError> {
        if self.peek().0 == want {
            self.next();
            Ok(())
        } else {
            self.unexpected()
        }
    }

    fn or_expr(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.and_expr()?;
        while self.eat_kw("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.not_expr()?;
        while self.eat_kw("and") {
            left = Filter::And(Box::new(left), Box::new(self.not_expr()?));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Filter, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((format!("nesting deeper than {MAX_DEPTH}"), self.peek().1));
        }
        let out = if self.eat_kw("not") {
            Ok(Filter::Not(Box::new(self.not_expr()?)))
        } else if self.peek().0 == Tok::LParen {
            self.next();
            let inner = self.or_expr()?;
            self.expect(Tok::RParen)?;
            Ok(inner)
        } else {
            self.predicate()
        };
        self.depth -= 1;
        out
    }

    fn field(&mut self) -> Result<Field, ParseError> {
        let mut segs = Vec::new();
        loop {
            match self.peek().0.clone() {
                Tok::Ident(s) if !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k)) => {
                    self.next();
                    segs.push((s, false));
                }
                Tok::Quoted(s) => {
                    self.next();
                    segs.push((s, true));
                }
                _ => return self.unexpected(),
            }
            if self.peek().0 == Tok::Dot {
                self.next();
            } else {
                break;
            }
        }
        // Only a bare `id` is the record id; `"id"` is a metadata key.
        Ok(if segs.len() == 1 && segs[0] == ("id".to_string(), false) {
            Field::Id
        } else {
            Field::Meta(segs.into_iter().map(|(s, _)| s).collect())
        })
    }

    fn list(&mut self) -> Result<Vec<Value>, ParseError> {
        self.expect(Tok::LParen)?;
        let mut values = vec![self.value()?];
        while self.peek().0 == Tok::Comma {
            self.next();
            values.push(self.value()?);
        }
        self.expect(Tok::RParen)?;
        Ok(values)
    }

    /// A string literal, where only one will do (`what` names it).
    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().clone() {
            (Tok::Str(s), _) => {
                self.next();
                Ok(s)
            }
            (t, col) => Err((
                format!("{what} must be a string, not {}", describe(&t)),
                col,
            )),
        }
    }

    /// After `LIKE` or `ILIKE`: the pattern and an optional `ESCAPE 'c'`.
    fn like(
        &mut self,
        field: Field,
        ignore_case: bool,
        negated: bool,
    ) -> Result<Filter, ParseError> {
        let col = self.peek().1;
        let pattern = self.string("a LIKE pattern")?;
        let escape = if self.eat_kw("escape") {
            let at = self.peek().1;
            let e = self.string("an ESCAPE character")?;
            let mut chars = e.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => return Err(("ESCAPE takes a single character".into(), at)),
            }
        } else {
            None
        };
        let like = Like {
            pattern,
            escape,
            ignore_case,
            negated,
        };
        like.parts().map_err(|m| (m, col))?;
        Ok(Filter::Like(field, like))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        let v = match &self.peek().0 {
            Tok::Str(s) => Value::Str(s.clone()),
            Tok::Int(n) => Value::Int(*n),
            Tok::Float(x) => Value::Float(*x),
            t if keyword(t, "true") => Value::Bool(true),
            t if keyword(t, "false") => Value::Bool(false),
            _ => return self.unexpected(),
        };
        self.next();
        Ok(v)
    }

    fn predicate(&mut self) -> Result<Filter, ParseError> {
        let field = self.field()?;
        match self.peek().0.clone() {
            Tok::Op(op) => {
                self.next();
                Ok(Filter::Cmp(field, op, self.value()?))
            }
            t if keyword(&t, "is") => {
                self.next();
                let negated = self.eat_kw("not");
                if !self.eat_kw("null") {
                    return self.unexpected();
                }
                Ok(Filter::IsNull(field, negated))
            }
            t if keyword(&t, "in") || keyword(&t, "not") => {
                let negated = self.eat_kw("not");
                if self.eat_kw("like") {
                    return self.like(field, false, negated);
                }
                if self.eat_kw("ilike") {
                    return self.like(field, true, negated);
                }
                if !self.eat_kw("in") {
                    return self.unexpected();
                }
                Ok(Filter::In(field, self.list()?, negated))
            }
            t if keyword(&t, "contains") => {
                self.next();
                if self.eat_kw("any") {
                    Ok(Filter::ContainsAny(field, self.list()?))
                } else if self.eat_kw("all") {
                    Ok(Filter::ContainsAll(field, self.list()?))
                } else {
                    Ok(Filter::Contains(field, self.value()?))
                }
            }
            t if keyword(&t, "like") || keyword(&t, "ilike") => {
                self.next();
                self.like(field, keyword(&t, "ilike"), false)
            }
            t if keyword(&t, "starts") => {
                self.next();
                if !self.eat_kw("with") {
                    return self.unexpected();
                }
                let prefix = self.string("a STARTS WITH prefix")?;
                Ok(Filter::StartsWith(field, prefix))
            }
            _ => self.unexpected(),
        }
    }
}

/// Check a path given to `index_field`: dotted, or written as in a filter
/// (`"file-path"`, `a."b.c"`).
pub(crate) fn check_path(path: &str) -> Result<Vec<String>, Error> {
    let field = field_text(path).unwrap_or_else(|| Field::parse_path(path));
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

/// A field written as in a filter (`a.b`, `"file-path"`), alone; `None`
/// if the text is not one.
fn field_text(text: &str) -> Option<Field> {
    let toks = lex(text).ok()?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let f = p.field().ok()?;
    (p.peek().0 == Tok::End).then_some(f)
}

fn parse(text: &str) -> Result<Filter, ParseError> {
    if text.len() > MAX_LEN {
        return Err((format!("filter longer than {MAX_LEN} bytes"), 1));
    }
    let toks = lex(text)?;
    if toks.len() == 1 {
        return Err(("empty filter".into(), 1));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let f = p.or_expr()?;
    if p.peek().0 != Tok::End {
        return p.unexpected();
    }
    Ok(f)
}

impl FromStr for Filter {
    type Err = Error;

    /// Parse filter text.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] with the 1-based column of the problem.
    fn from_str(s: &str) -> Result<Filter, Error> {
        parse(s).map_err(|(reason, column)| Error::InvalidFilter {
            reason,
            column: Some(column),
        })
    }
}
