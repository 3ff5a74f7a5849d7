//! The checks a manifest must pass for its task, beside those every manifest passes
//! ([`ModelManifest::validate`]): classifiers, ranking models and product models (detectors'
//! are in [`crate::detection::manifest`]).

use super::{Dim, ModelManifest, check_sha256};
use crate::{Error, ModelFiles, Result};

impl ModelManifest {
    /// A product model: a classifier's labels and output, on a backbone, with its text and
    /// image-presence inputs and a usable tokenizer.
    pub(super) fn validate_product(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Manifest(msg));
        self.validate_classifier()?;
        if self.text.is_some() || self.rank_metrics.is_some() {
            return bad("a product model has no ranking text tower or recall".into());
        }
        if self.backbone.is_none() {
            return bad("a product model's head runs on a backbone (`backbone`)".into());
        }
        let Some(p) = &self.product else {
            return bad("a product model needs its head's inputs (`product`)".into());
        };
        let len = p.tokenizer.max_len;
        for spec in [&p.ids, &p.mask] {
            if !matches!(spec.shape.as_slice(), [Dim::Symbol(_), Dim::Fixed(n)] if *n == len) {
                return bad(format!(
                    "product input {} has shape {}, expected [batch, {len}]",
                    spec.name,
                    spec.shape_string()
                ));
            }
        }
        if !matches!(
            p.has_image.shape.as_slice(),
            [Dim::Symbol(_), Dim::Fixed(1)]
        ) {
            return bad(format!(
                "product input {} has shape {}, expected [batch, 1]",
                p.has_image.name,
                p.has_image.shape_string()
            ));
        }
        let names = [&p.ids.name, &p.mask.name, &p.has_image.name];
        if names.iter().any(|n| n.is_empty())
            || names[0] == names[1]
            || names[1] == names[2]
            || names[0] == names[2]
        {
            return bad(format!(
                "product inputs need three distinct names, got {names:?}"
            ));
        }
        crate::tokenizer::Tokenizer::new(p.tokenizer.clone())?;
        Ok(())
    }

    /// A classifier: ≥ 2 distinct labels, one score per label.
    pub(super) fn validate_classifier(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Manifest(msg));
        if self.gallery.is_some() {
            return bad("a classifier has no search gallery (`gallery`)".into());
        }
        if self.labels.len() < 2 {
            return bad(format!(
                "a classifier needs ≥ 2 labels, got {}",
                self.labels.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return bad(format!("label {dup:?} appears twice"));
        }
        let out_ok = matches!(
            self.output.shape.as_slice(),
            [Dim::Symbol(_), Dim::Fixed(n)] if *n == self.labels.len()
        );
        if !out_ok {
            return bad(format!(
                "output shape {} must be [batch, {}] (one score per label)",
                self.output.shape_string(),
                self.labels.len()
            ));
        }
        Ok(())
    }

    /// A ranking model: image and text embeddings of one size, text inputs of the tokenizer's
    /// length, a usable tokenizer.
    pub(super) fn validate_ranking(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Manifest(msg));
        let Some(text) = &self.text else {
            return bad("a ranking model needs its text tower (`text`)".into());
        };
        let dim = match self.output.shape.as_slice() {
            [Dim::Symbol(_), Dim::Fixed(d)] => *d,
            _ => {
                return bad(format!(
                    "output shape {} must be [batch, dim]",
                    self.output.shape_string()
                ));
            }
        };
        if !matches!(text.output.shape.as_slice(), [Dim::Symbol(_), Dim::Fixed(d)] if *d == dim) {
            return bad(format!(
                "text output shape {} must be [batch, {dim}] like the image embeddings",
                text.output.shape_string()
            ));
        }
        let len = text.tokenizer.max_len;
        for spec in [&text.ids, &text.mask] {
            if !matches!(spec.shape.as_slice(), [Dim::Symbol(_), Dim::Fixed(n)] if *n == len) {
                return bad(format!(
                    "text input {} has shape {}, expected [batch, {len}]",
                    spec.name,
                    spec.shape_string()
                ));
            }
        }
        crate::tokenizer::Tokenizer::new(text.tokenizer.clone())?;
        check_sha256("text.onnx.sha256", &text.onnx.sha256)?;
        if let Some(g) = &self.gallery {
            for (what, digest, name) in [
                ("gallery.index", &g.index, ModelFiles::GALLERY_JSON),
                ("gallery.vectors", &g.vectors, ModelFiles::GALLERY_BIN),
            ] {
                // Clients build the file's URL from this name: only the gallery's own.
                if digest.file != name {
                    return bad(format!("{what}.file {:?} must be {name:?}", digest.file));
                }
                check_sha256(&format!("{what}.sha256"), &digest.sha256)?;
            }
        }
        Ok(())
    }
}
