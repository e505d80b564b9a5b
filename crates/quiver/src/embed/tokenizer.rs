//! A WordPiece tokenizer read from a Hugging Face `tokenizer.json`, matching
//! the reference (`tokenizers`) pipeline for BERT-family models:
//!
//! 1. added (special) tokens such as `[CLS]` written in the text are
//!    matched first and map straight to their ids;
//! 2. the `BertNormalizer` cleans the text (drops control characters,
//!    maps whitespace to spaces), puts spaces around CJK ideographs, strips
//!    accents (NFD, then drops nonspacing marks) and lowercases;
//! 3. the `BertPreTokenizer` splits on whitespace and isolates every
//!    punctuation character;
//! 4. the `WordPiece` model segments each word greedily, longest match
//!    first, into vocabulary pieces (`##` marks a continuation);
//! 5. the post-processor wraps the ids in `[CLS]` ... `[SEP]`, after
//!    truncation to the model's token limit.

use std::collections::HashMap;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::unicode_tables::{in_table, MARK_NONSPACING, OTHER, PUNCTUATION};

/// Settings of the `BertNormalizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Normalizer {
    /// Drop control characters, map every whitespace character to a space.
    pub clean_text: bool,
    /// Put spaces around CJK ideographs.
    pub handle_chinese_chars: bool,
    /// NFD, then drop nonspacing marks.
    pub strip_accents: bool,
    /// Lowercase, character by character.
    pub lowercase: bool,
}

impl Normalizer {
    /// Everything on: the `bert-base-uncased` normalizer.
    #[cfg(test)]
    pub(crate) const UNCASED: Normalizer = Normalizer {
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: true,
        lowercase: true,
    };

    /// Normalizes `text`, appending the result to `out`.
    pub(crate) fn normalize_into(&self, text: &str, out: &mut String) {
        let stage1 = text.chars().filter_map(|c| {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    return None;
                }
                if is_whitespace(c) {
                    return Some(' ');
                }
            }
            Some(c)
        });
        // CJK ideographs become " c "; everything else passes through.
        let stage2 = stage1.flat_map(|c| {
            if self.handle_chinese_chars && is_chinese_char(c) {
                [Some(' '), Some(c), Some(' ')]
            } else {
                [Some(c), None, None]
            }
            .into_iter()
            .flatten()
        });
        let lowercase = self.lowercase;
        let push = |out: &mut String, c: char| {
            if lowercase {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        };
        if self.strip_accents && !text.is_ascii() {
            for c in stage2.nfd() {
                if !in_table(c, MARK_NONSPACING) {
                    push(out, c);
                }
            }
        } else {
            // ASCII text is its own NFD and has no marks.
            for c in stage2 {
                push(out, c);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn normalize(&self, text: &str) -> String {
        let mut out = String::new();
        self.normalize_into(text, &mut out);
        out
    }
}

/// Whitespace for the normalizer: `\t`, `\n`, `\r` and Unicode White_Space.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control characters dropped by the normalizer (Cc, Cf, Co), except the
/// three that count as whitespace.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && in_table(c, OTHER)
}

/// The CJK ideograph blocks of BERT's `_is_chinese_char` (as in `tokenizers`).
pub(crate) fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// BERT's punctuation: all ASCII punctuation (including `$+<=>^`|~`, which
/// Unicode calls symbols) and every Unicode P* character.
pub(crate) fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && in_table(c, PUNCTUATION))
}

/// The `BertPreTokenizer`: calls `f` with each word of `text`, split on
/// whitespace (dropped) and around punctuation (each its own word). Stops
/// early, returning `false`, as soon as `f` does.
pub(crate) fn pre_tokenize(text: &str, mut f: impl FnMut(&str) -> bool) -> bool {
    let mut start = None;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws || is_punctuation(c) {
            if let Some(s) = start.take() {
                if !f(&text[s..i]) {
                    return false;
                }
            }
            if !ws && !f(&text[i..i + c.len_utf8()]) {
                return false;
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    match start {
        Some(s) => f(&text[s..]),
        None => true,
    }
}

/// A token of the added vocabulary (`added_tokens` in `tokenizer.json`),
/// matched in the text before anything else.
#[derive(Debug, Clone)]
struct AddedToken {
    content: String,
    id: u32,
    single_word: bool,
}

/// The greedy longest-match-first WordPiece model.
#[derive(Debug)]
pub(crate) struct WordPiece {
    vocab: HashMap<String, u32>,
    unk_id: u32,
    prefix: String,
    max_input_chars_per_word: usize,
}

impl WordPiece {
    /// A model over `vocab`; `unk` must be in it.
    pub(crate) fn new(
        vocab: HashMap<String, u32>,
        unk: &str,
        prefix: &str,
        max_input_chars_per_word: usize,
    ) -> Result<WordPiece, String> {
        let unk_id = *vocab
            .get(unk)
            .ok_or_else(|| format!("tokenizer.json: unk token {unk:?} is not in the vocabulary"))?;
        Ok(WordPiece {
            vocab,
            unk_id,
            prefix: prefix.to_string(),
            max_input_chars_per_word,
        })
    }

    /// Appends the ids of `word` to `out`: its pieces, or one unknown token
    /// when it is too long or has no full segmentation.
    pub(crate) fn tokenize_word(&self, word: &str, buf: &mut String, out: &mut Vec<u32>) {
        if word.chars().nth(self.max_input_chars_per_word).is_some() {
            out.push(self.unk_id);
            return;
        }
        let first = out.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                buf.clear();
                if start > 0 {
                    buf.push_str(&self.prefix);
                }
                buf.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(buf.as_str()) {
                    found = Some(id);
                    break;
                }
                // Step back one character.
                end -= word[start..end]
                    .chars()
                    .next_back()
                    .map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk_id);
                    return;
                }
            }
        }
    }

    /// The largest id of the vocabulary.
    pub(crate) fn max_id(&self) -> u32 {
        self.vocab.values().copied().max().unwrap_or(0)
    }
}

/// The full tokenizer: added tokens, normalizer, pre-tokenizer, WordPiece
/// and special tokens, with truncation.
#[derive(Debug)]
pub(crate) struct Tokenizer {
    /// Added tokens matched on the raw text.
    added_raw: Vec<AddedToken>,
    /// Added tokens matched on the normalized text (content normalized).
    added_normalized: Vec<AddedToken>,
    normalizer: Option<Normalizer>,
    model: WordPiece,
    /// Ids put before the text.
    prefix_ids: Vec<u32>,
    /// Ids put after the text.
    suffix_ids: Vec<u32>,
    /// Lowercase the text first (sentence-transformers' `do_lower_case`).
    pre_lowercase: bool,
    /// Token limit, special tokens included.
    max_len: usize,
}

/// A piece of text after splitting on added tokens.
enum Segment<'a> {
    Text(&'a str),
    Token(u32),
}

impl Tokenizer {
    /// Reads a `tokenizer.json` document. `max_len` is the token limit,
    /// special tokens included; `pre_lowercase` lowercases the text before
    /// anything else.
    pub(crate) fn from_json(
        json: &Value,
        max_len: usize,
        pre_lowercase: bool,
    ) -> Result<Tokenizer, String> {
        let model = parse_model(json.get("model").unwrap_or(&Value::Null))?;
        let normalizer = parse_normalizer(json.get("normalizer").unwrap_or(&Value::Null))?;
        match json.get("pre_tokenizer").unwrap_or(&Value::Null) {
            v if type_of(v) == Some("BertPreTokenizer") => {}
            Value::Null => {
                return Err("tokenizer.json: no pre_tokenizer (BertPreTokenizer expected)".into())
            }
            v => {
                return Err(format!(
                    "tokenizer.json: unsupported pre_tokenizer {} (BertPreTokenizer expected)",
                    type_of(v).unwrap_or("?")
                ))
            }
        }
        let (prefix_ids, suffix_ids) =
            parse_post_processor(json.get("post_processor").unwrap_or(&Value::Null))?;
        if prefix_ids.len() + suffix_ids.len() >= max_len {
            return Err(format!(
                "token limit {max_len} leaves no room for text between the special tokens"
            ));
        }
        let mut added_raw = Vec::new();
        let mut added_normalized = Vec::new();
        if let Some(list) = json.get("added_tokens").and_then(Value::as_array) {
            for t in list {
                let content = t.get("content").and_then(Value::as_str);
                let id = t.get("id").and_then(Value::as_u64);
                let (Some(content), Some(id)) = (content, id) else {
                    return Err("tokenizer.json: an added token lacks content or id".into());
                };
                let id = u32::try_from(id)
                    .map_err(|_| format!("tokenizer.json: added token id {id} is too large"))?;
                if content.is_empty() {
                    continue;
                }
                let single_word = t.get("single_word").and_then(Value::as_bool) == Some(true);
                let normalized = t.get("normalized").and_then(Value::as_bool) == Some(true);
                match (normalized, normalizer) {
                    (true, Some(n)) => {
                        let mut content_n = String::new();
                        n.normalize_into(content, &mut content_n);
                        if !content_n.is_empty() {
                            added_normalized.push(AddedToken {
                                content: content_n,
                                id,
                                single_word,
                            });
                        }
                    }
                    _ => added_raw.push(AddedToken {
                        content: content.to_string(),
                        id,
                        single_word,
                    }),
                }
            }
        }
        Ok(Tokenizer {
            added_raw,
            added_normalized,
            normalizer,
            model,
            prefix_ids,
            suffix_ids,
            pre_lowercase,
            max_len,
        })
    }

    /// The largest token id this tokenizer can produce.
    pub(crate) fn max_id(&self) -> u32 {
        let added = self.added_raw.iter().chain(&self.added_normalized);
        added
            .map(|t| t.id)
            .chain(self.prefix_ids.iter().copied())
            .chain(self.suffix_ids.iter().copied())
            .fold(self.model.max_id(), u32::max)
    }

    /// Token limit, special tokens included.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// The ids of `text`, truncated to the token limit, special tokens
    /// included.
    pub(crate) fn encode(&self, text: &str) -> Vec<u32> {
        let budget = self.max_len - self.prefix_ids.len() - self.suffix_ids.len();
        let mut ids = self.prefix_ids.clone();
        let limit = ids.len() + budget;
        let lowered;
        let text = if self.pre_lowercase {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let mut normalized = String::new();
        let mut buf = String::new();
        // Returns false once the budget is used up.
        let mut words = |s: &str, ids: &mut Vec<u32>| {
            pre_tokenize(s, |word| {
                self.model.tokenize_word(word, &mut buf, ids);
                ids.len() < limit
            })
        };
        'outer: for segment in split_added(text, &self.added_raw) {
            match segment {
                Segment::Token(id) => ids.push(id),
                Segment::Text(raw) => {
                    // Long texts go through in pieces cut after whitespace,
                    // so that truncation stops the work early.
                    let mut rest = raw;
                    while !rest.is_empty() {
                        let cut = if self.added_normalized.is_empty() {
                            piece_end(rest)
                        } else {
                            rest.len()
                        };
                        let (piece, tail) = rest.split_at(cut);
                        rest = tail;
                        let s = match self.normalizer {
                            Some(n) => {
                                normalized.clear();
                                n.normalize_into(piece, &mut normalized);
                                normalized.as_str()
                            }
                            None => piece,
                        };
                        for inner in split_added(s, &self.added_normalized) {
                            match inner {
                                Segment::Token(id) => ids.push(id),
                                Segment::Text(w) => {
                                    if !words(w, &mut ids) {
                                        break 'outer;
                                    }
                                }
                            }
                            if ids.len() >= limit {
                                break 'outer;
                            }
                        }
                    }
                }
            }
            if ids.len() >= limit {
                break;
            }
        }
        ids.truncate(limit);
        ids.extend_from_slice(&self.suffix_ids);
        if ids.is_empty() {
            // No special tokens and no text: the encoder needs a token.
            ids.push(self.model.unk_id);
        }
        ids
    }
}

/// Where the first piece of a long text ends: just after the first
/// whitespace character past [`PIECE_BYTES`] (the whole text if none).
fn piece_end(text: &str) -> usize {
    if text.len() <= PIECE_BYTES {
        return text.len();
    }
    text.char_indices()
        .skip_while(|&(i, _)| i < PIECE_BYTES)
        .find(|&(_, c)| c.is_whitespace())
        .map_or(text.len(), |(i, c)| i + c.len_utf8())
}

/// Size of the pieces a long text is normalized in.
const PIECE_BYTES: usize = 4096;

/// Splits `text` around the added tokens it contains (leftmost, then
/// longest match).
fn split_added<'a>(text: &'a str, tokens: &[AddedToken]) -> Vec<Segment<'a>> {
    let mut out = Vec::new();
    if tokens.is_empty() {
        out.push(Segment::Text(text));
        return out;
    }
    let mut last = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let best = tokens
            .iter()
            .filter(|t| bytes[i..].starts_with(t.content.as_bytes()))
            .filter(|t| !t.single_word || is_word_bounded(text, i, i + t.content.len()))
            .max_by_key(|t| t.content.len());
        match best {
            Some(t) => {
                if last < i {
                    out.push(Segment::Text(&text[last..i]));
                }
                out.push(Segment::Token(t.id));
                i += t.content.len();
                last = i;
            }
            None => i += 1,
        }
    }
    if last < text.len() {
        out.push(Segment::Text(&text[last..]));
    }
    out
}

/// True when `text[start..end]` is not glued to a word character.
fn is_word_bounded(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    !text[..start].chars().next_back().is_some_and(word)
        && !text[end..].chars().next().is_some_and(word)
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

fn parse_model(v: &Value) -> Result<WordPiece, String> {
    match type_of(v) {
        Some("WordPiece") => {}
        Some(other) => {
            return Err(format!(
                "tokenizer.json: unsupported model {other} (WordPiece expected)"
            ))
        }
        None => return Err("tokenizer.json: no model type (WordPiece expected)".into()),
    }
    let Some(map) = v.get("vocab").and_then(Value::as_object) else {
        return Err("tokenizer.json: the WordPiece model has no vocab".into());
    };
    let mut vocab = HashMap::with_capacity(map.len());
    for (token, id) in map {
        let id = id
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| format!("tokenizer.json: bad id for vocabulary token {token:?}"))?;
        vocab.insert(token.clone(), id);
    }
    let unk = v
        .get("unk_token")
        .and_then(Value::as_str)
        .unwrap_or("[UNK]");
    let prefix = v
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or("##");
    let max_chars = match v.get("max_input_chars_per_word") {
        None | Some(Value::Null) => 100,
        Some(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("tokenizer.json: bad max_input_chars_per_word")?,
    };
    WordPiece::new(vocab, unk, prefix, max_chars)
}

fn parse_normalizer(v: &Value) -> Result<Option<Normalizer>, String> {
    match type_of(v) {
        None if v.is_null() => Ok(None),
        Some("BertNormalizer") => {
            let flag = |name: &str, default: bool| -> Result<Option<bool>, String> {
                match v.get(name) {
                    None => Ok(Some(default)),
                    Some(Value::Null) => Ok(None),
                    Some(Value::Bool(b)) => Ok(Some(*b)),
                    Some(_) => Err(format!(
                        "tokenizer.json: normalizer.{name} is not a boolean"
                    )),
                }
            };
            let lowercase = flag("lowercase", true)?.unwrap_or(true);
            Ok(Some(Normalizer {
                clean_text: flag("clean_text", true)?.unwrap_or(true),
                handle_chinese_chars: flag("handle_chinese_chars", true)?.unwrap_or(true),
                // null (the default) follows lowercase.
                strip_accents: flag("strip_accents", lowercase)?.unwrap_or(lowercase),
                lowercase,
            }))
        }
        other => Err(format!(
            "tokenizer.json: unsupported normalizer {} (BertNormalizer expected)",
            other.unwrap_or("?")
        )),
    }
}

/// The special ids put before and after the text.
fn parse_post_processor(v: &Value) -> Result<(Vec<u32>, Vec<u32>), String> {
    let id_of = |pair: Option<&Value>, name: &str| -> Result<u32, String> {
        pair.and_then(|p| p.get(1))
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| format!("tokenizer.json: post_processor.{name} is not [token, id]"))
    };
    match type_of(v) {
        None if v.is_null() => Ok((Vec::new(), Vec::new())),
        Some("BertProcessing") | Some("RobertaProcessing") => {
            let cls = id_of(v.get("cls"), "cls")?;
            let sep = id_of(v.get("sep"), "sep")?;
            Ok((vec![cls], vec![sep]))
        }
        Some("TemplateProcessing") => {
            let Some(single) = v.get("single").and_then(Value::as_array) else {
                return Err("tokenizer.json: post_processor has no single template".into());
            };
            let specials = v.get("special_tokens");
            let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
            let mut seen_sequence = false;
            for piece in single {
                if piece.get("Sequence").is_some() {
                    if seen_sequence {
                        return Err("tokenizer.json: single template has two sequences".into());
                    }
                    seen_sequence = true;
                } else if let Some(name) = piece
                    .get("SpecialToken")
                    .and_then(|s| s.get("id"))
                    .and_then(Value::as_str)
                {
                    let ids = specials
                        .and_then(|s| s.get(name))
                        .and_then(|s| s.get("ids"))
                        .and_then(Value::as_array)
                        .ok_or_else(|| {
                            format!("tokenizer.json: special token {name:?} has no ids")
                        })?;
                    for id in ids {
                        let id = id
                            .as_u64()
                            .and_then(|id| u32::try_from(id).ok())
                            .ok_or_else(|| {
                                format!("tokenizer.json: bad id for special token {name:?}")
                            })?;
                        if seen_sequence {
                            suffix.push(id);
                        } else {
                            prefix.push(id);
                        }
                    }
                } else {
                    return Err("tokenizer.json: unsupported piece in the single template".into());
                }
            }
            if !seen_sequence {
                return Err("tokenizer.json: single template has no sequence".into());
            }
            Ok((prefix, suffix))
        }
        other => Err(format!(
            "tokenizer.json: unsupported post_processor {}",
            other.unwrap_or("?")
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pre_tokenize(text, |w| {
            out.push(w.to_string());
            true
        });
        out
    }

    #[test]
    fn normalizer_lowercases_and_strips_accents() {
        let n = Normalizer::UNCASED;
        assert_eq!(n.normalize("Café NAÏVE résumé"), "cafe naive resume");
        assert_eq!(n.normalize("Ελληνικά"), "ελληνικα");
        // Per-character lowercasing: no final-sigma rule.
        assert_eq!(n.normalize("ΟΔΟΣ"), "οδοσ");
        assert_eq!(n.normalize("Привет"), "привет");
        // Accents are stripped before lowercasing.
        assert_eq!(n.normalize("İ"), "i");
    }

    #[test]
    fn normalizer_cleans_text() {
        let n = Normalizer::UNCASED;
        assert_eq!(n.normalize("a\tb\nc\rd"), "a b c d");
        assert_eq!(n.normalize("a\u{0}b\u{fffd}c\u{7}d"), "abcd");
        // Zero-width joiner and soft hyphen are format characters: dropped.
        assert_eq!(n.normalize("a\u{200d}b\u{ad}c"), "abc");
        // Other Unicode whitespace becomes a plain space.
        assert_eq!(n.normalize("a\u{3000}b\u{a0}c"), "a b c");
        // The variation selector is a nonspacing mark: stripped.
        assert_eq!(n.normalize("\u{2764}\u{fe0f}"), "\u{2764}");
    }

    #[test]
    fn normalizer_spaces_cjk() {
        let n = Normalizer::UNCASED;
        assert_eq!(n.normalize("向量ab"), " 向  量 ab");
        // Hiragana is not a CJK ideograph (and its voicing mark is a
        // nonspacing mark after NFD: stripped, as in the reference).
        assert_eq!(n.normalize("ひらがな"), "ひらかな");
    }

    #[test]
    fn normalizer_flags_off() {
        let n = Normalizer {
            clean_text: false,
            handle_chinese_chars: false,
            strip_accents: false,
            lowercase: false,
        };
        assert_eq!(n.normalize("Café\t向"), "Café\t向");
        let cased_accents = Normalizer {
            strip_accents: false,
            ..Normalizer::UNCASED
        };
        assert_eq!(cased_accents.normalize("Café"), "café");
    }

    #[test]
    fn pre_tokenizer_splits_whitespace_and_punctuation() {
        assert_eq!(
            words("Hey friend!     How are you?!?"),
            ["Hey", "friend", "!", "How", "are", "you", "?", "!", "?"]
        );
        assert_eq!(
            words("a+b=c $5 ^_^"),
            ["a", "+", "b", "=", "c", "$", "5", "^", "_", "^"]
        );
        // Unicode punctuation (em dash, guillemets) is isolated too; symbols are not.
        assert_eq!(
            words("x—y «z» 🚀!"),
            ["x", "—", "y", "«", "z", "»", "🚀", "!"]
        );
        assert!(words("   ").is_empty());
        assert_eq!(words("x"), ["x"]);
    }

    #[test]
    fn pre_tokenizer_stops_early() {
        let mut seen = 0;
        let done = pre_tokenize("a b c d", |_| {
            seen += 1;
            seen < 2
        });
        assert!(!done);
        assert_eq!(seen, 2);
    }

    fn toy_wordpiece(max_chars: usize) -> WordPiece {
        let vocab = ["[UNK]", "un", "##aff", "##able", "a", "##b", "##a", "ab"]
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        WordPiece::new(vocab, "[UNK]", "##", max_chars).unwrap()
    }

    fn wp(model: &WordPiece, word: &str) -> Vec<u32> {
        let mut out = vec![99];
        model.tokenize_word(word, &mut String::new(), &mut out);
        out.remove(0);
        out
    }

    #[test]
    fn wordpiece_greedy_longest_match() {
        let m = toy_wordpiece(100);
        assert_eq!(wp(&m, "unaffable"), [1, 2, 3]);
        // Longest first: "ab" beats "a" + "##b".
        assert_eq!(wp(&m, "ab"), [7]);
        assert_eq!(wp(&m, "aba"), [7, 6]);
        // No full segmentation: one unknown, earlier pieces dropped.
        assert_eq!(wp(&m, "unx"), [0]);
        assert_eq!(wp(&m, "z"), [0]);
    }

    #[test]
    fn wordpiece_long_words_are_unknown() {
        let m = toy_wordpiece(4);
        assert_eq!(wp(&m, "abab"), [7, 6, 5]);
        assert_eq!(wp(&m, "ababa"), [0]);
        // The limit counts characters, not bytes.
        let vocab = [
            ("[UNK]".to_string(), 0),
            ("é".to_string(), 1),
            ("##é".to_string(), 2),
        ];
        let m = WordPiece::new(vocab.into_iter().collect(), "[UNK]", "##", 2).unwrap();
        assert_eq!(wp(&m, "éé"), [1, 2]);
        assert_eq!(wp(&m, "ééé"), [0]);
    }

    #[test]
    fn wordpiece_needs_unk_in_vocab() {
        let vocab = [("a".to_string(), 0)].into_iter().collect();
        assert!(WordPiece::new(vocab, "[UNK]", "##", 100).is_err());
    }

    fn toy_tokenizer(max_len: usize) -> Tokenizer {
        let json = serde_json::json!({
            "added_tokens": [
                {"id": 0, "content": "[PAD]", "normalized": false},
                {"id": 1, "content": "[UNK]", "normalized": false},
                {"id": 2, "content": "[CLS]", "normalized": false},
                {"id": 3, "content": "[SEP]", "normalized": false}
            ],
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2]},
                                   "[SEP]": {"id": "[SEP]", "ids": [3]}}},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3,
                          "hello": 4, "world": 5, "!": 6, "cafe": 7, "向": 8, "##s": 9}}
        });
        Tokenizer::from_json(&json, max_len, false).unwrap()
    }

    #[test]
    fn tokenizer_end_to_end() {
        let t = toy_tokenizer(16);
        assert_eq!(t.encode("Hello, WORLD!"), [2, 4, 1, 5, 6, 3]);
        assert_eq!(t.encode("Cafés向"), [2, 7, 9, 8, 3]);
        assert_eq!(t.encode(""), [2, 3]);
        // Special tokens in the text map to their ids, unnormalized.
        assert_eq!(t.encode("hello[SEP]world"), [2, 4, 3, 5, 3]);
        assert_eq!(t.encode("hello [sep]"), [2, 4, 1, 1, 1, 3]);
        assert_eq!(t.max_id(), 9);
    }

    #[test]
    fn tokenizer_truncates_with_specials_included() {
        let t = toy_tokenizer(5);
        assert_eq!(t.encode("hello world hello world"), [2, 4, 5, 4, 3]);
        assert_eq!(t.encode("hello worlds hello"), [2, 4, 5, 9, 3]);
        assert_eq!(t.encode("hello world"), [2, 4, 5, 3]);
    }

    #[test]
    fn long_texts_are_cut_into_pieces_at_whitespace() {
        let t = toy_tokenizer(100_000);
        // Words straddling every possible piece boundary.
        let text = "hello world! ".repeat(2000) + "Cafés";
        let ids = t.encode(&text);
        assert_eq!(ids.len(), 2 + 3 * 2000 + 2);
        assert_eq!(&ids[ids.len() - 3..], [7, 9, 3]);
        let unbroken = "x".repeat(3 * PIECE_BYTES);
        assert_eq!(piece_end(&unbroken), unbroken.len());
        let spaced = format!("{} é{}", "y".repeat(PIECE_BYTES), unbroken);
        assert_eq!(piece_end(&spaced), PIECE_BYTES + 1);
        // Truncated early: the same ids as for the short text.
        let short = toy_tokenizer(5);
        assert_eq!(short.encode(&text), [2, 4, 5, 6, 3]);
    }

    #[test]
    fn tokenizer_rejects_unsupported_pieces() {
        let base = serde_json::json!({
            "normalizer": null,
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": null,
            "model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}
        });
        let bare = Tokenizer::from_json(&base, 8, false).unwrap();
        // No special tokens: an empty text still gets one (unknown) token.
        assert_eq!(bare.encode(""), [0]);
        let mut bpe = base.clone();
        bpe["model"]["type"] = "BPE".into();
        assert!(Tokenizer::from_json(&bpe, 8, false).is_err());
        let mut meta = base.clone();
        meta["pre_tokenizer"]["type"] = "Metaspace".into();
        assert!(Tokenizer::from_json(&meta, 8, false).is_err());
        let mut nfkc = base;
        nfkc["normalizer"] = serde_json::json!({"type": "NFKC"});
        assert!(Tokenizer::from_json(&nfkc, 8, false).is_err());
    }
}
