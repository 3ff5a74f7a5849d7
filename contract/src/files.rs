//! The model-folder contract: which files a model version consists of, per task, and where
//! clients fetch them. The trainer writes these names, the registry copies exactly these to
//! storage, the file route serves only these, and the browser builds its URLs from them.

use crate::Task;

/// Names and URLs of a model version's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFiles;

impl ModelFiles {
    /// The classifier graph (backbone + head), checked against the manifest's sha256.
    pub const MODEL_ONNX: &'static str = "model.onnx";
    /// The [`ModelManifest`](crate::ModelManifest) as JSON.
    pub const MANIFEST: &'static str = "manifest.json";
    /// Per-epoch curves and test figures of the run that made the model.
    pub const METRICS: &'static str = "metrics.json";
    /// Training curves and confusion matrix as one SVG.
    pub const REPORT: &'static str = "report.svg";
    /// The trained head's weights (rebuilds `model.onnx` without retraining).
    pub const HEAD: &'static str = "head.safetensors";
    /// Ranking: the image encoder (backbone + projection).
    pub const IMAGE_ONNX: &'static str = "image.onnx";
    /// Ranking: the text encoder (tokenizer ids → embedding).
    pub const TEXT_ONNX: &'static str = "text.onnx";
    /// Ranking: the searchable images (ids, labels, captions, int8 scale).
    pub const GALLERY_JSON: &'static str = "gallery.json";
    /// Ranking: the gallery's int8 vectors, row-major, `count × dim`.
    pub const GALLERY_BIN: &'static str = "gallery.bin";

    /// Every file a model of `task` stores (and nothing else is served for it).
    pub fn of(task: Task) -> &'static [&'static str] {
        match task {
            Task::Classify => &[
                Self::MODEL_ONNX,
                Self::MANIFEST,
                Self::METRICS,
                Self::REPORT,
                Self::HEAD,
            ],
            Task::Rank => &[
                Self::IMAGE_ONNX,
                Self::TEXT_ONNX,
                Self::MANIFEST,
                Self::METRICS,
                Self::GALLERY_JSON,
                Self::GALLERY_BIN,
            ],
        }
    }

    /// The graph the image input of a `task` model runs through (the manifest's `onnx`).
    pub fn image_graph(task: Task) -> &'static str {
        match task {
            Task::Classify => Self::MODEL_ONNX,
            Task::Rank => Self::IMAGE_ONNX,
        }
    }

    /// Whether `name` is one of the files of a `task` model.
    pub fn is_model_file(task: Task, name: &str) -> bool {
        Self::of(task).contains(&name)
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
