//! The text tokenizer of ranking models, defined once: the trainer builds the vocabulary and
//! encodes captions with it, the browser (through the wasm bindings) and the api encode queries
//! with it. Its specification travels in the model manifest, so a model and its tokenizer
//! never drift apart.
//!
//! `words-v1`: lower-case; split on every character that is not alphanumeric; fold a plural
//! `-s` (words longer than 3 letters, not ending in `ss`); look each word up in the vocabulary
//! (id 0 = padding, 1 = unknown); keep the first `max_len` words; pad to `max_len`. A text with
//! no words encodes as one unknown word, so its embedding is defined.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Id of the padding after a text's last word (mask 0).
pub const PAD: i64 = 0;
/// Unknown-word id.
pub const UNK: i64 = 1;
/// The tokenizer kind described here.
pub const KIND: &str = "words-v1";

/// The tokenizer as the manifest stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    /// Always [`KIND`].
    pub kind: String,
    /// Words per text (ids and mask length).
    pub max_len: usize,
    /// `vocab[id]` is the word of `id`; `vocab[0]` = `<pad>`, `vocab[1]` = `<unk>`.
    pub vocab: Vec<String>,
}

/// A text as the text encoder takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Word ids, `max_len` of them.
    pub ids: Vec<i64>,
    /// 1 for a word, 0 for padding.
    pub mask: Vec<f32>,
}

/// The words of a text, normalised.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.chars().count() > 3 && w.ends_with('s') && !w.ends_with("ss") {
                w[..w.len() - 1].to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// Build a vocabulary from training texts: words seen at least `min_count` times, most
/// frequent first (ties alphabetical), at most `max_vocab` ids in all.
pub fn build(
    texts: impl IntoIterator<Item = impl AsRef<str>>,
    min_count: usize,
    max_vocab: usize,
    max_len: usize,
) -> TokenizerSpec {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in texts {
        for w in words(t.as_ref()) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= min_count.max(1))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut vocab = vec!["<pad>".to_string(), "<unk>".to_string()];
    vocab.extend(
        ranked
            .into_iter()
            .take(max_vocab.saturating_sub(2))
            .map(|(w, _)| w),
    );
    TokenizerSpec {
        kind: KIND.into(),
        max_len,
        vocab,
    }
}

/// A tokenizer ready to encode.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    spec: TokenizerSpec,
    index: HashMap<String, i64>,
}

impl Tokenizer {
    /// Check a spec and index its vocabulary.
    pub fn new(spec: TokenizerSpec) -> Result<Self> {
        if spec.kind != KIND {
            return Err(Error::Manifest(format!(
                "unknown tokenizer kind {:?} (this build knows {KIND:?})",
                spec.kind
            )));
        }
        if spec.max_len == 0 || spec.vocab.len() < 2 {
            return Err(Error::Manifest(
                "tokenizer needs max_len ≥ 1 and the <pad>/<unk> entries".into(),
            ));
        }
        let mut index = HashMap::with_capacity(spec.vocab.len());
        for (i, w) in spec.vocab.iter().enumerate().skip(2) {
            if index.insert(w.clone(), i as i64).is_some() {
                return Err(Error::Manifest(format!(
                    "word {w:?} twice in the vocabulary"
                )));
            }
        }
        Ok(Self { spec, index })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &TokenizerSpec {
        &self.spec
    }

    /// Ids and mask of a text.
    pub fn encode(&self, text: &str) -> Encoded {
        let n = self.spec.max_len;
        let mut ids: Vec<i64> = words(text)
            .iter()
            .take(n)
            .map(|w| self.index.get(w).copied().unwrap_or(UNK))
            .collect();
        if ids.is_empty() {
            ids.push(UNK);
        }
        let mut mask = vec![1.0; ids.len()];
        ids.resize(n, PAD);
        mask.resize(n, 0.0);
        Encoded { ids, mask }
    }

    /// Ids and mask of a text that may be absent (product models, which take text, an image
    /// or both): a text with no words is all padding with a zero mask, which those models
    /// read as "no text", where [`Tokenizer::encode`] gives one unknown word.
    pub fn encode_optional(&self, text: &str) -> Encoded {
        let n = self.spec.max_len;
        if words(text).is_empty() {
            return Encoded {
                ids: vec![PAD; n],
                mask: vec![0.0; n],
            };
        }
        self.encode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: the same text must give the same ids natively and in wasm (the node
    /// parity test checks the wasm side against these).
    pub(crate) fn golden() -> Tokenizer {
        Tokenizer::new(build(
            ["A koala.", "Two koalas in a tree", "A red bus", "a tree"],
            1,
            100,
            6,
        ))
        .unwrap()
    }

    #[test]
    fn normalises_words() {
        assert_eq!(
            words("Two KOALAS, a bus; glass-bottles & 3 cats!"),
            ["two", "koala", "a", "bus", "glass", "bottle", "3", "cat"]
        );
        assert_eq!(words("  ...  "), Vec::<String>::new());
        assert_eq!(words("Ünïcode Wörds"), ["ünïcode", "wörd"]);
    }

    #[test]
    fn vocabulary_by_frequency_then_alphabet() {
        let t = golden();
        assert_eq!(
            t.spec().vocab,
            [
                "<pad>", "<unk>", "a", "koala", "tree", "bus", "in", "red", "two"
            ]
        );
    }

    #[test]
    fn encodes_with_padding_unknowns_and_truncation() {
        let t = golden();
        let e = t.encode("A koala in a eucalyptus tree");
        assert_eq!(e.ids, [2, 3, 6, 2, 1, 4]);
        assert_eq!(e.mask, [1.0; 6]);
        let e = t.encode("Red bus!");
        assert_eq!(e.ids, [7, 5, 0, 0, 0, 0]);
        assert_eq!(e.mask, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        let e = t.encode("a a a a a a a a koala");
        assert_eq!(e.ids, [2; 6]);
        let e = t.encode("?!");
        assert_eq!(e.ids, [1, 0, 0, 0, 0, 0]);
        assert_eq!(e.mask, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn optional_text_is_absent_only_without_words() {
        let t = golden();
        let e = t.encode_optional(" ?! ");
        assert_eq!(e.ids, [0; 6]);
        assert_eq!(e.mask, [0.0; 6]);
        assert_eq!(t.encode_optional("Red bus!"), t.encode("Red bus!"));
        assert_eq!(t.encode_optional("zebra").ids, [1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn rejects_bad_specs() {
        let mut s = golden().spec().clone();
        s.kind = "bpe".into();
        assert!(Tokenizer::new(s).is_err());
        let mut s = golden().spec().clone();
        s.vocab.push("koala".into());
        assert!(Tokenizer::new(s).is_err());
        let mut s = golden().spec().clone();
        s.max_len = 0;
        assert!(Tokenizer::new(s).is_err());
    }
}
