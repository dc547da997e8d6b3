//! The model cache: `<platform cache dir>/neural-style` (or `$NEURAL_STYLE_CACHE`, or a
//! directory given explicitly), holding each downloaded file under its published name and
//! a conv-only `.safetensors` made from it on first use. Writers take a lock file per
//! model and every file appears by atomic rename, so concurrent runs never see half a file.

use std::fs::File;
use std::path::{Path, PathBuf};

use neural_style::WeightFile;

use crate::Model;
use crate::download::{DownloadEvent, Downloader, part_path, verify_file};
use crate::error::{Error, Result};

/// The environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "NEURAL_STYLE_CACHE";

/// A cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    dir: PathBuf,
}

/// What the cache holds for one model.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The model.
    pub model: Model,
    /// The downloaded file's path and size, when present.
    pub file: Option<(PathBuf, u64)>,
    /// The conv-only `.safetensors` path and size, when present.
    pub converted: Option<(PathBuf, u64)>,
    /// Bytes of an interrupted download waiting to be resumed.
    pub partial: Option<u64>,
}

/// Holds a model's lock file locked until dropped.
struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Cache {
    /// The cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache to use: `explicit` if given, else `$NEURAL_STYLE_CACHE`, else the
    /// platform's cache directory (`~/.cache`, `~/Library/Caches`, `%LOCALAPPDATA%`) with a
    /// `neural-style` subfolder.
    pub fn locate(explicit: Option<&Path>) -> Result<Self> {
        if let Some(dir) = explicit {
            return Ok(Self::new(dir));
        }
        if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::new(dir));
        }
        dirs::cache_dir()
            .map(|d| Self::new(d.join("neural-style")))
            .ok_or(Error::NoCacheDir)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the model's downloaded file lives.
    pub fn path(&self, model: &Model) -> PathBuf {
        self.dir.join(&model.file_name)
    }

    /// Where the model's conv-only `.safetensors` lives.
    pub fn converted_path(&self, model: &Model) -> PathBuf {
        let stem = Path::new(&model.file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| model.name.clone());
        self.dir.join(format!("{stem}.conv.safetensors"))
    }

    fn lock(&self, model: &Model) -> Result<Lock> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(format!("{}.lock", model.file_name));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(Lock(file))
    }

    /// The model's downloaded file, downloading it first if absent (waiting for another
    /// process that is downloading it).
    pub fn fetch(
        &self,
        model: &Model,
        downloader: &Downloader,
        observer: &mut dyn FnMut(&DownloadEvent<'_>),
    ) -> Result<PathBuf> {
        let path = self.path(model);
        if path.is_file() {
            return Ok(path);
        }
        let _lock = self.lock(model)?;
        if !path.is_file() {
            downloader.fetch(model, &path, observer)?;
        }
        Ok(path)
    }

    /// A weights file for `model` that loads fast: the cached conv-only `.safetensors`,
    /// made from the downloaded file (downloaded first if needed) the first time.
    pub fn weights(
        &self,
        model: &Model,
        downloader: &Downloader,
        observer: &mut dyn FnMut(&DownloadEvent<'_>),
    ) -> Result<PathBuf> {
        let converted = self.converted_path(model);
        if converted.is_file() {
            return Ok(converted);
        }
        let source = self.fetch(model, downloader, observer)?;
        let _lock = self.lock(model)?;
        if !converted.is_file() {
            convert(&source, &converted, Some(model))?;
        }
        Ok(converted)
    }

    /// Adopts a file the user downloaded by hand: checks it against the model's size and
    /// SHA-256, then copies it into the cache (atomically). Returns the cached path.
    pub fn import(&self, model: &Model, file: &Path) -> Result<PathBuf> {
        verify_file(model, file)?;
        let dest = self.path(model);
        let _lock = self.lock(model)?;
        let tmp = part_path(&dest);
        std::fs::copy(file, &tmp).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&tmp, e)
        })?;
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        // A conversion of some earlier file must not outlive it.
        let _ = std::fs::remove_file(self.converted_path(model));
        Ok(dest)
    }

    /// Re-checks the cached file's size and SHA-256, and that its conversion (if any) is
    /// readable. A file that fails is removed, with its conversion, so the next run
    /// downloads it again.
    pub fn verify(&self, model: &Model) -> Result<PathBuf> {
        let path = self.path(model);
        if !path.is_file() {
            return Err(Error::NotCached {
                model: model.name.clone(),
                path,
            });
        }
        let _lock = self.lock(model)?;
        if let Err(e) = verify_file(model, &path) {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(self.converted_path(model));
            return Err(e);
        }
        let converted = self.converted_path(model);
        if converted.is_file()
            && let Err(e) = WeightFile::open(&converted).and_then(|f| f.info(Some(model.arch)))
        {
            let _ = std::fs::remove_file(&converted);
            return Err(e.into());
        }
        Ok(path)
    }

    /// What the cache holds for each known model.
    pub fn entries(&self) -> Vec<CacheEntry> {
        let sized = |p: PathBuf| std::fs::metadata(&p).ok().map(|m| (p, m.len()));
        Model::known()
            .into_iter()
            .map(|model| CacheEntry {
                file: sized(self.path(&model)),
                converted: sized(self.converted_path(&model)),
                partial: sized(part_path(&self.path(&model))).map(|(_, n)| n),
                model,
            })
            .collect()
    }
}

/// Converts a weights file (`.pth` or `.safetensors`) to a conv-only `.safetensors` at
/// `out`, recording the model's architecture and input convention when given.
pub fn convert(
    input: &Path,
    out: &Path,
    model: Option<&Model>,
) -> Result<neural_style::WeightsInfo> {
    let file = WeightFile::open(input)?;
    Ok(file.write_conv_safetensors(model.map(|m| m.arch), model.map(|m| m.convention), out)?)
}
