//! The model-folder contract: which files a model version consists of, per task, and where
//! clients fetch them. The trainer writes these names, the registry copies exactly these to
//! storage, the file route serves only these, and the browser builds its URLs from them.
//!
//! A model version is small: its head graphs, manifest and reports. The frozen backbone the
//! heads run on is one content-addressed file shared by every version and task
//! ([`ModelFiles::backbone_url`]), stored once and cached for good by browsers.

use crate::Task;

/// Names and URLs of a model version's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFiles;

impl ModelFiles {
    /// The whole classifier graph (backbone + head) of versions written before heads were
    /// split from the backbone; still served for them.
    pub const MODEL_ONNX: &'static str = "model.onnx";
    /// The classifier head (backbone features → probabilities), the manifest's `onnx`.
    pub const HEAD_ONNX: &'static str = "head.onnx";
    /// The frozen backbone (image → features) in a trainer's output folder; the registry
    /// stores it once under its sha256, not per version.
    pub const BACKBONE_ONNX: &'static str = "backbone.onnx";
    /// The same backbone, decluttered by tract and written as NNEF with its weights in 8 bits
    /// (`wasm_infer::quant`): what browsers download and run; stored once under its own
    /// sha256.
    pub const BACKBONE_INT8: &'static str = "backbone.q8";
    /// Ranking: the image tower's head (backbone features → embedding), the manifest's `onnx`.
    pub const IMAGE_HEAD_ONNX: &'static str = "image_head.onnx";
    /// The classifier head as browsers load it: decluttered by tract and written as NNEF
    /// (`wasm_infer::nnef`), the manifest's `nnef`.
    pub const HEAD_NNEF: &'static str = "head.nnef";
    /// Ranking: the image tower's head as NNEF, the manifest's `nnef`.
    pub const IMAGE_HEAD_NNEF: &'static str = "image_head.nnef";
    /// Ranking: the text encoder as NNEF, `text.nnef` of the manifest.
    pub const TEXT_NNEF: &'static str = "text.nnef";
    /// Product classification: the head (backbone features, word ids and mask, image
    /// presence → probabilities), the manifest's `onnx`.
    pub const PRODUCT_HEAD_ONNX: &'static str = "product_head.onnx";
    /// Product classification: the head as NNEF, the manifest's `nnef`.
    pub const PRODUCT_HEAD_NNEF: &'static str = "product_head.nnef";
    /// Detection: the head (the backbone's feature map → class and box maps), the manifest's
    /// `onnx`.
    pub const DETECT_HEAD_ONNX: &'static str = "detect_head.onnx";
    /// Detection: the head as NNEF, the manifest's `nnef`.
    pub const DETECT_HEAD_NNEF: &'static str = "detect_head.nnef";
    /// The [`ModelManifest`](crate::ModelManifest) as JSON.
    pub const MANIFEST: &'static str = "manifest.json";
    /// Per-epoch curves and test figures of the run that made the model.
    pub const METRICS: &'static str = "metrics.json";
    /// Training curves and confusion matrix as one SVG.
    pub const REPORT: &'static str = "report.svg";
    /// The trained head's weights (rebuilds `head.onnx` without retraining).
    pub const HEAD: &'static str = "head.safetensors";
    /// Ranking: the whole image encoder (backbone + projection) of versions written before
    /// heads were split from the backbone; still served for them.
    pub const IMAGE_ONNX: &'static str = "image.onnx";
    /// Ranking: the text encoder (tokenizer ids → embedding).
    pub const TEXT_ONNX: &'static str = "text.onnx";
    /// Ranking: the searchable images (ids, labels, captions, int8 scale).
    pub const GALLERY_JSON: &'static str = "gallery.json";
    /// Ranking: the gallery's int8 vectors, row-major, `count × dim`.
    pub const GALLERY_BIN: &'static str = "gallery.bin";

    /// Every file a model of `task` stores under its id (the backbone is stored apart).
    pub fn of(task: Task) -> &'static [&'static str] {
        match task {
            Task::Classify => &[
                Self::HEAD_ONNX,
                Self::HEAD_NNEF,
                Self::MANIFEST,
                Self::METRICS,
                Self::REPORT,
                Self::HEAD,
            ],
            Task::Rank => &[
                Self::IMAGE_HEAD_ONNX,
                Self::IMAGE_HEAD_NNEF,
                Self::TEXT_ONNX,
                Self::TEXT_NNEF,
                Self::MANIFEST,
                Self::METRICS,
                Self::GALLERY_JSON,
                Self::GALLERY_BIN,
            ],
            Task::Product => &[
                Self::PRODUCT_HEAD_ONNX,
                Self::PRODUCT_HEAD_NNEF,
                Self::MANIFEST,
                Self::METRICS,
            ],
            Task::Detect => &[
                Self::DETECT_HEAD_ONNX,
                Self::DETECT_HEAD_NNEF,
                Self::MANIFEST,
                Self::METRICS,
            ],
        }
    }

    /// The graph the image features of a `task` model run through (the manifest's `onnx`).
    pub fn image_graph(task: Task) -> &'static str {
        match task {
            Task::Classify => Self::HEAD_ONNX,
            Task::Rank => Self::IMAGE_HEAD_ONNX,
            Task::Product => Self::PRODUCT_HEAD_ONNX,
            Task::Detect => Self::DETECT_HEAD_ONNX,
        }
    }

    /// The NNEF form of [`Self::image_graph`]: what browsers load (the manifest's `nnef`).
    pub fn image_graph_nnef(task: Task) -> &'static str {
        match task {
            Task::Classify => Self::HEAD_NNEF,
            Task::Rank => Self::IMAGE_HEAD_NNEF,
            Task::Product => Self::PRODUCT_HEAD_NNEF,
            Task::Detect => Self::DETECT_HEAD_NNEF,
        }
    }

    /// Whether `name` is one of the files of a `task` model (of this layout or the earlier
    /// whole-graph one).
    pub fn is_model_file(task: Task, name: &str) -> bool {
        let legacy = match task {
            Task::Classify => Some(Self::MODEL_ONNX),
            Task::Rank => Some(Self::IMAGE_ONNX),
            Task::Product | Task::Detect => None,
        };
        Self::of(task).contains(&name) || legacy == Some(name)
    }

    /// The name a backbone file is stored and served under: its lower-case sha256 and the
    /// extension of its kind (`backbone.onnx` → `.onnx`, `backbone.q8` → `.q8`).
    pub fn backbone_name(file: &str, sha256: &str) -> String {
        let ext = file.rsplit_once('.').map_or("onnx", |(_, e)| e);
        format!("{}.{ext}", sha256.to_ascii_lowercase())
    }

    /// Where clients download a backbone file (immutable: the address is the content).
    pub fn backbone_url(file: &str, sha256: &str) -> String {
        format!("/api/backbones/{}", Self::backbone_name(file, sha256))
    }

    /// The storage key of a backbone file.
    pub fn backbone_key(file: &str, sha256: &str) -> String {
        format!("backbones/{}", Self::backbone_name(file, sha256))
    }

    /// Where clients download `file` of model `model_id` (immutable: the id names the version).
    pub fn url(model_id: &str, file: &str) -> String {
        format!("/api/models/{model_id}/{file}")
    }

    /// Where clients read the manifest of the current champion of `task`.
    pub fn current_url(task: Task) -> String {
        format!("/api/models/current?task={}", task.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_stores_its_manifest_and_its_image_graph() {
        for task in Task::ALL {
            assert!(ModelFiles::is_model_file(*task, ModelFiles::MANIFEST));
            assert!(ModelFiles::is_model_file(
                *task,
                ModelFiles::image_graph(*task)
            ));
        }
        assert!(!ModelFiles::is_model_file(Task::Classify, "gallery.bin"));
        assert!(!ModelFiles::is_model_file(
            Task::Classify,
            ModelFiles::BACKBONE_ONNX
        ));
        assert!(ModelFiles::is_model_file(Task::Classify, "model.onnx"));
        for task in Task::ALL {
            assert!(ModelFiles::is_model_file(
                *task,
                ModelFiles::image_graph_nnef(*task)
            ));
        }
        assert!(ModelFiles::is_model_file(Task::Rank, ModelFiles::TEXT_NNEF));
        assert!(!ModelFiles::is_model_file(
            Task::Classify,
            ModelFiles::TEXT_NNEF
        ));
        assert!(ModelFiles::is_model_file(Task::Rank, "image.onnx"));
        assert_eq!(
            ModelFiles::backbone_url(ModelFiles::BACKBONE_ONNX, &"AB".repeat(32)),
            format!("/api/backbones/{}.onnx", "ab".repeat(32))
        );
        assert_eq!(
            ModelFiles::backbone_key(ModelFiles::BACKBONE_INT8, &"ab".repeat(32)),
            format!("backbones/{}.q8", "ab".repeat(32))
        );
        assert_eq!(
            ModelFiles::url("m1", ModelFiles::GALLERY_BIN),
            "/api/models/m1/gallery.bin"
        );
        assert_eq!(
            ModelFiles::current_url(Task::Rank),
            "/api/models/current?task=rank"
        );
    }
}
