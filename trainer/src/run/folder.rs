//! The model folder a run leaves: written to a temporary sibling and renamed over the target
//! only when every file is there, so a failed or cancelled run never leaves a half-written
//! model. The writer hands back the bytes it wrote, so a caller (the api's registry) uploads
//! them without reading the folder again.

use std::path::{Path, PathBuf};

use crate::Result;
use crate::error::io;

/// What a training run returns: its report (also written as `metrics.json`) and the files of
/// the model folder it wrote.
#[derive(Debug, Clone)]
pub struct Trained<R> {
    /// The run's report.
    pub report: R,
    /// Every file of the model folder, as written.
    pub files: ModelFolder,
}

/// The files of a model folder as written: name and bytes, in write order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelFolder {
    files: Vec<(String, Vec<u8>)>,
}

impl ModelFolder {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a file to be written.
    pub fn with(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.put(name, bytes.into());
        self
    }

    fn put(&mut self, name: &str, bytes: Vec<u8>) {
        match self.files.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = bytes,
            None => self.files.push((name.to_string(), bytes)),
        }
    }

    /// The bytes of file `name`, if the folder has it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Names and bytes, in write order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// Replace `out_dir` atomically ([`replace_dir`]) with these files, plus whatever `extra`
    /// writes into the new folder (files a library can only write to a path); those are read
    /// back, so the returned folder holds every file written.
    pub fn write(
        mut self,
        out_dir: &Path,
        extra: impl FnOnce(&Path) -> Result<Vec<&'static str>>,
    ) -> Result<Self> {
        let mut read_back = Vec::new();
        replace_dir(out_dir, |tmp| {
            for (name, bytes) in &self.files {
                write_file(tmp, name, bytes)?;
            }
            for name in extra(tmp)? {
                let path = tmp.join(name);
                read_back.push((name, std::fs::read(&path).map_err(io(path))?));
            }
            Ok(())
        })?;
        for (name, bytes) in read_back {
            self.put(name, bytes);
        }
        Ok(self)
    }

    /// Write one more file into an existing folder `dir` and keep its bytes.
    pub fn add(&mut self, dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
        write_file(dir, name, &bytes)?;
        self.put(name, bytes);
        Ok(())
    }
}

/// Replace `out_dir` atomically with a folder that `fill` writes: `fill` gets a temporary
/// sibling folder, which is renamed over `out_dir` once it succeeded (removed if it failed, so
/// a failed run leaves `out_dir` as it was).
pub fn replace_dir(out_dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir).map_err(io(out_dir))?;
    }
    std::fs::rename(&tmp, out_dir).map_err(io(out_dir))?;
    Ok(())
}

/// Write `bytes` to `dir/file`.
pub fn write_file(dir: &Path, file: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, bytes).map_err(io(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_returns_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m");
        let folder = ModelFolder::new()
            .with("a.txt", b"a".to_vec())
            .write(&out, |tmp| {
                write_file(tmp, "b.bin", b"bb")?;
                Ok(vec!["b.bin"])
            })
            .unwrap();
        assert_eq!(folder.get("a.txt"), Some(&b"a"[..]));
        assert_eq!(folder.get("b.bin"), Some(&b"bb"[..]));
        assert_eq!(std::fs::read(out.join("b.bin")).unwrap(), b"bb");
        let failed = ModelFolder::new()
            .with("c", b"c".to_vec())
            .write(&out, |_| Err(crate::Error::Cancelled));
        assert!(failed.is_err());
        assert!(out.join("a.txt").exists() && !out.join("c").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
