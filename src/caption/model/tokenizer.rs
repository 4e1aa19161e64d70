//! The captioner's tokenizer: a JSON vocabulary (`argus.tokenizer.v1`, docs/captioner.md)
//! where a token's id is its index. Encoding is whitespace-aware word pieces: ASCII
//! lowercasing (optional), whitespace split, ASCII punctuation as pieces of their own,
//! then greedy longest match with `##` continuations (BERT style); a piece that cannot be
//! spelled from the vocabulary becomes the unknown token. scripts/make-tiny-captioner.py
//! mirrors these rules exactly (the test compares both).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

pub const FORMAT: &str = "argus.tokenizer.v1";

/// Punctuation that decoding glues to the previous word ("near the gate." not "gate .").
const GLUE: &[&str] = &[".", ",", "!", "?", ";", ":"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizerError {
    #[error("cannot read it: {0}")]
    Read(String),
    #[error("not a tokenizer file: {0}")]
    Json(String),
    #[error("`format` is `{0}`; expected `argus.tokenizer.v1`")]
    Format(String),
    #[error("the vocabulary is empty")]
    Empty,
    #[error("token `{token}` appears twice (ids {first} and {second})")]
    Duplicate { token: String, first: usize, second: usize },
    #[error("the empty string is not a token (id {0})")]
    EmptyToken(usize),
    #[error("special token `{role}` = `{token}` is not in the vocabulary")]
    MissingSpecial { role: &'static str, token: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizerFile {
    format: String,
    #[serde(default)]
    lowercase: bool,
    vocab: Vec<String>,
    bos: String,
    eos: String,
    pad: String,
    unk: String,
}

#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: Vec<String>,
    ids: HashMap<String, i64>,
    lowercase: bool,
    pub bos: i64,
    pub eos: i64,
    pub pad: i64,
    pub unk: i64,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::Read(e.to_string()))?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let f: TokenizerFile = serde_json::from_str(text).map_err(|e| TokenizerError::Json(e.to_string()))?;
        if f.format != FORMAT {
            return Err(TokenizerError::Format(f.format));
        }
        if f.vocab.is_empty() {
            return Err(TokenizerError::Empty);
        }
        let mut ids = HashMap::with_capacity(f.vocab.len());
        for (i, t) in f.vocab.iter().enumerate() {
            if t.is_empty() {
                return Err(TokenizerError::EmptyToken(i));
            }
            if let Some(first) = ids.insert(t.clone(), i as i64) {
                return Err(TokenizerError::Duplicate { token: t.clone(), first: first as usize, second: i });
            }
        }
        let special =
            |role: &'static str, token: &str| ids.get(token).copied().ok_or_else(|| TokenizerError::MissingSpecial { role, token: token.to_string() });
        Ok(Self {
            bos: special("bos", &f.bos)?,
            eos: special("eos", &f.eos)?,
            pad: special("pad", &f.pad)?,
            unk: special("unk", &f.unk)?,
            vocab: f.vocab,
            ids,
            lowercase: f.lowercase,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Token ids of `text` (no BOS/EOS).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let text = if self.lowercase { text.to_ascii_lowercase() } else { text.to_string() };
        let mut out = Vec::new();
        for word in text.split_whitespace() {
            for piece in split_punctuation(word) {
                self.encode_piece(piece, &mut out);
            }
        }
        out
    }

    /// What the model is fed first: BOS, then the prompt's tokens.
    pub fn encode_prompt(&self, prompt: &str) -> Vec<i64> {
        let mut ids = vec![self.bos];
        ids.extend(self.encode(prompt));
        ids
    }

    fn encode_piece(&self, piece: &str, out: &mut Vec<i64>) {
        // Char boundaries, so a non-ASCII piece never slices inside a character.
        let bounds: Vec<usize> = piece.char_indices().map(|(i, _)| i).chain(std::iter::once(piece.len())).collect();
        let mut found = Vec::new();
        let mut start = 0; // index into `bounds`
        while start + 1 < bounds.len() {
            let mut end = bounds.len() - 1;
            let hit = loop {
                if end <= start {
                    break None;
                }
                let sub = &piece[bounds[start]..bounds[end]];
                let id = if start == 0 { self.ids.get(sub) } else { self.ids.get(&format!("##{sub}")) };
                if let Some(id) = id {
                    break Some(*id);
                }
                end -= 1;
            };
            match hit {
                Some(id) => {
                    found.push(id);
                    start = end;
                }
                None => {
                    out.push(self.unk);
                    return;
                }
            }
        }
        out.extend(found);
    }

    /// Text of generated ids: special tokens (BOS, EOS, PAD) are skipped, `##` pieces join
    /// the previous word, closing punctuation sticks to it, other tokens are space-separated.
    /// An id outside the vocabulary is decoded as the unknown token.
    pub fn decode(&self, ids: &[i64]) -> String {
        let mut out = String::new();
        for &id in ids {
            if id == self.bos || id == self.eos || id == self.pad {
                continue;
            }
            let tok = usize::try_from(id).ok().and_then(|i| self.vocab.get(i)).unwrap_or(&self.vocab[self.unk as usize]);
            if let Some(rest) = tok.strip_prefix("##").filter(|r| !r.is_empty()) {
                out.push_str(rest);
            } else if GLUE.contains(&tok.as_str()) {
                out.push_str(tok);
            } else {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(tok);
            }
        }
        out
    }

    /// Words of `text` the vocabulary cannot spell (each once, in order).
    pub fn unknown_words<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for word in text.split_whitespace() {
            if self.encode(word).contains(&self.unk) && !out.contains(&word) {
                out.push(word);
            }
        }
        out
    }
}

/// "gate-a," → ["gate", "-", "a", ","]: ASCII punctuation characters stand alone.
fn split_punctuation(word: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in word.char_indices() {
        if c.is_ascii_punctuation() {
            if start < i {
                out.push(&word[start..i]);
            }
            out.push(&word[i..i + 1]);
            start = i + 1;
        }
    }
    if start < word.len() {
        out.push(&word[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::from_json(
            r###"{"format": "argus.tokenizer.v1", "lowercase": true,
                "vocab": ["<pad>", "<bos>", "<eos>", "<unk>", "a", "person", "walk", "##ing", "##s",
                          "near", "gate", ".", ",", "fork", "##lift", "é"],
                "bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>"}"###,
        )
        .unwrap()
    }

    #[test]
    fn encodes_word_pieces_punctuation_and_unknowns() {
        let t = tok();
        assert_eq!(t.encode("A person walking near gate."), vec![4, 5, 6, 7, 9, 10, 11]);
        assert_eq!(t.encode("  Forklifts,\twalks "), vec![13, 14, 8, 12, 6, 8]);
        // "zebra" cannot be spelled; "gates-x": gate ##s, then "-" and "x" are unknown.
        assert_eq!(t.encode("zebra gates-x"), vec![3, 10, 8, 3, 3]);
        // Non-ASCII: whole characters only, never a split inside one.
        assert_eq!(t.encode("é éa"), vec![15, 3]);
        assert_eq!(t.encode_prompt(""), vec![1]);
        assert_eq!(t.encode_prompt("a"), vec![1, 4]);
        assert_eq!(t.unknown_words("a zebra near gate-x zebra"), vec!["zebra", "gate-x"]);
    }

    #[test]
    fn decodes_joining_pieces_and_skipping_specials() {
        let t = tok();
        assert_eq!(t.decode(&[1, 4, 5, 6, 7, 9, 10, 11, 2]), "a person walking near gate.");
        assert_eq!(t.decode(&[13, 14, 8, 12, 0, 6]), "forklifts, walk");
        assert_eq!(t.decode(&[99, -1, 4]), "<unk> <unk> a");
        assert_eq!(t.decode(&[]), "");
        // Round trip of what it can spell.
        let text = "a person walking near gate, forklifts.";
        assert_eq!(t.decode(&t.encode(text)), text);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let base = |vocab: &str, extra: &str| {
            format!(r#"{{"format": "argus.tokenizer.v1", "vocab": {vocab}, "bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"{extra}}}"#)
        };
        let specials = r#"["<pad>", "<s>", "</s>", "<unk>"]"#;
        assert!(Tokenizer::from_json(&base(specials, "")).is_ok());
        assert_eq!(Tokenizer::from_json(&base("[]", "")).unwrap_err(), TokenizerError::Empty);
        assert!(matches!(
            Tokenizer::from_json(&base(r#"["<pad>", "<s>", "</s>", "<unk>", "<s>"]"#, "")),
            Err(TokenizerError::Duplicate { first: 1, second: 4, .. })
        ));
        assert!(matches!(Tokenizer::from_json(&base(r#"["<pad>", "<s>", "<unk>"]"#, "")), Err(TokenizerError::MissingSpecial { role: "eos", .. })));
        assert!(matches!(Tokenizer::from_json(&base(r#"["<pad>", "<s>", "</s>", "<unk>", ""]"#, "")), Err(TokenizerError::EmptyToken(4))));
        assert!(matches!(Tokenizer::from_json(&base(specials, r#", "merges": []"#)), Err(TokenizerError::Json(_))));
        assert!(matches!(Tokenizer::from_json(&base(specials, "").replace("argus.tokenizer.v1", "hf")), Err(TokenizerError::Format(_))));
        assert!(matches!(Tokenizer::from_json("not json"), Err(TokenizerError::Json(_))));
    }
}
