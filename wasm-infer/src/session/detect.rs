//! Detection models in a session: the image preprocessed as the manifest says (the whole
//! image, stretched), the backbone's feature map through the head, and the maps decoded into
//! boxes by `contract::detection::decode` with the manifest's `detection.decode` — the same
//! code in the api's server fallback and in the browser.

use contract::detection::{LabelledBox, decode};

use super::Session;
use crate::preprocess::{Pixels, image_to_tensor};
use crate::{Error, Result, Task};

impl Session {
    /// The boxes a detection model shows on an image, best first, in the image's pixels.
    pub fn detect(&self, pixels: &Pixels<'_>) -> Result<Vec<LabelledBox>> {
        let manifest = self.manifest();
        let (Task::Detect, Some(shape), Some(spec)) =
            (manifest.task, manifest.head_shape(), manifest.detection)
        else {
            return Err(Error::manifest(format!(
                "model {} is a {} model, not a detector",
                manifest.model_id,
                manifest.task.as_str()
            )));
        };
        let input = image_to_tensor(pixels, &manifest.preprocess)?;
        let maps = self.run(&input)?.remove(0);
        let found = decode(&maps, shape, (pixels.width, pixels.height), 0, &spec.decode)?;
        Ok(found
            .into_iter()
            .map(|d| LabelledBox {
                label: manifest.labels[d.label as usize].clone(),
                score: d.score,
                bbox: d.bbox,
            })
            .collect())
    }
}
