//! Image-text ranking: a dual encoder trained with candle on the frozen backbone.
//!
//! Both towers meet in the space of the backbone's 1000 ImageNet classes, projected to `dim`:
//!
//! - Image tower: EfficientNet-Lite0 (frozen) → its ImageNet classifier (frozen) → softmax →
//!   learnt projection `P` → L2 norm.
//! - Text tower: the shared tokenizer (`wasm_infer::tokenizer`) → a learnt class distribution
//!   per word, initialised from the ImageNet class names (the word "koala" starts on the class
//!   "koala, koala bear, …"; words of no class name start at zero and are learnt from the
//!   captions) → mean over the words → the same `P` → L2 norm.
//!
//! So a word that names an ImageNet class finds its images before any training (zero-shot),
//! and training on captions adapts the projection and the words to the user's images. No
//! pretrained text encoder small enough for a browser can be had offline; the class names
//! are the pretrained knowledge on the text side.
//!
//! Loss: symmetric InfoNCE over the batch with a learnable temperature (logit scale `exp(s)`,
//! capped at 100). Evaluation: Recall@1/5/10 and median rank in both directions, next to
//! chance and a bag-of-words baseline that uses the same frozen features but no text model.
//!
//! The rooms: [`model`] (the towers as tensors), [`fit`] (training), [`eval`] (recall and
//! baselines), [`export`] (the two ONNX encoders), [`pipeline`] (the whole run and its model
//! folder), [`gallery`] (every image embedded for offline search).

pub mod eval;
pub mod export;
pub mod fit;
pub mod gallery;
pub mod model;
pub mod pipeline;

pub use crate::run::PARITY_TOLERANCE;
pub use contract::gallery::{Gallery, GalleryItem};
pub use eval::{bow_baseline, evaluate, random_recall, rank_of, recall_from_ranks};
pub use export::{EMBEDDING_NAME, IDS_NAME, MASK_NAME, export_image_head, export_text_encoder};
pub use fit::{RankConfig, RankEpoch, RankFit, fit};
pub use gallery::{GALLERY_BIN, GALLERY_JSON};
pub use model::{
    DualEncoder, Init, NORM_EPS_SQUARED, Pair, l2_normalize, text_batch, word_class_init,
};
pub use pipeline::{
    IMAGE_FILE, RankParity, RankReport, RankSplits, TEXT_FILE, check_parity, run, write_dir,
};
