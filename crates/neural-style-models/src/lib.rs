//! The pretrained VGG networks neural-style knows by name: where to download them, how to
//! check them (SHA-256), where they are cached, and a conv-only `.safetensors` kept next to
//! each large `.pth` so later runs load in a fraction of the time.
//!
//! Nothing here draws on a terminal: downloads report [`DownloadEvent`]s to an observer.

pub mod cache;
pub mod download;
pub mod error;

pub use cache::{CACHE_ENV, Cache, CacheEntry};
pub use download::{DownloadEvent, Downloader};
pub use error::{Error, Result};

use neural_style::{Arch, InputConvention};

/// A network that can be downloaded by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The name users type (`--model vgg19`).
    pub name: String,
    /// One line for `weights list`.
    pub summary: String,
    /// The file name in the cache (as published).
    pub file_name: String,
    /// Where to get it, tried in order.
    pub urls: Vec<String>,
    /// The size in bytes, when known.
    pub size: Option<u64>,
    /// The SHA-256 in lowercase hex: all 64 digits, or the leading digits that are known
    /// (a torch-hub file name carries the first 8).
    pub sha256: String,
    /// The architecture.
    pub arch: Arch,
    /// How pixels become the network's input.
    pub convention: InputConvention,
}

/// The environment variable naming a mirror to download models from instead of their
/// published URLs (a URL prefix; the file name is appended).
pub const MIRROR_ENV: &str = "NEURAL_STYLE_MIRROR";

/// The model used when neither `--weights` nor `--model` is given.
pub const DEFAULT_MODEL: &str = "vgg19";

impl Model {
    /// The known models: torchvision's VGG19 and VGG16 and the Caffe VGG19 converted to
    /// PyTorch (jcjohnson's conversion, used by neural-style-pt).
    pub fn known() -> Vec<Model> {
        vec![
            Model {
                name: "vgg19".into(),
                summary: "ImageNet VGG19 from torchvision (RGB in 0..1, ImageNet mean/std)".into(),
                file_name: "vgg19-dcbb9e9d.pth".into(),
                urls: vec!["https://download.pytorch.org/models/vgg19-dcbb9e9d.pth".into()],
                size: Some(574_673_361),
                sha256: "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44".into(),
                arch: Arch::Vgg19,
                convention: InputConvention::TorchRgb01,
            },
            Model {
                name: "vgg16".into(),
                summary: "ImageNet VGG16 from torchvision (RGB in 0..1, ImageNet mean/std)".into(),
                file_name: "vgg16-397923af.pth".into(),
                urls: vec!["https://download.pytorch.org/models/vgg16-397923af.pth".into()],
                size: Some(553_433_881),
                sha256: "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0".into(),
                arch: Arch::Vgg16,
                convention: InputConvention::TorchRgb01,
            },
            Model {
                name: "vgg19-caffe".into(),
                summary:
                    "the original Caffe VGG19 (Simonyan & Zisserman) converted to PyTorch, as \
                          neural-style-pt uses it (BGR in 0..255 minus the mean pixel)"
                        .into(),
                file_name: "vgg19-d01eb7cb.pth".into(),
                urls: vec![
                    "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth".into(),
                    "https://s3-us-west-2.amazonaws.com/jcjohns-models/vgg19-d01eb7cb.pth".into(),
                ],
                size: None,
                sha256: "d01eb7cb".into(),
                arch: Arch::Vgg19,
                convention: InputConvention::CaffeBgr255 {
                    mean_bgr: neural_style::model::vgg::CAFFE_MEAN_BGR,
                },
            },
        ]
    }

    /// The known model called `name`.
    pub fn find(name: &str) -> Result<Model> {
        let known = Model::known();
        known
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| Error::UnknownModel {
                name: name.to_string(),
                known: known.iter().map(|m| m.name.clone()).collect(),
            })
    }

    /// This model fetched from a mirror only: `base` followed by the file name (for
    /// networks without access to the published URLs; the checksum is still verified).
    pub fn with_mirror(mut self, base: &str) -> Model {
        self.urls = vec![format!("{}/{}", base.trim_end_matches('/'), self.file_name)];
        self
    }

    /// Whether a SHA-256 digest (lowercase hex) matches what is known of this model's.
    pub fn digest_matches(&self, digest: &str) -> bool {
        !self.sha256.is_empty() && digest.starts_with(&self.sha256.to_ascii_lowercase())
    }
}

/// The SHA-256 of a file, in lowercase hex.
pub fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_are_consistent() {
        for m in Model::known() {
            // torch-hub names carry the first 8 hex digits of the SHA-256.
            let tag = m
                .file_name
                .trim_end_matches(".pth")
                .rsplit('-')
                .next()
                .unwrap_or_default();
            assert!(m.sha256.starts_with(tag), "{}: {tag}", m.name);
            assert!(m.sha256.len() == 64 || m.sha256.len() == 8, "{}", m.name);
            assert!(!m.urls.is_empty());
            assert!(
                m.urls
                    .iter()
                    .all(|u| u.starts_with("https://") && u.ends_with(&m.file_name))
            );
        }
        assert!(Model::find(DEFAULT_MODEL).is_ok());
        let mirrored = Model::find("vgg16")
            .unwrap()
            .with_mirror("http://m.local/models/");
        assert_eq!(
            mirrored.urls,
            vec!["http://m.local/models/vgg16-397923af.pth"]
        );
        assert!(Model::find("VGG16").is_ok());
        let err = Model::find("resnet").unwrap_err().to_string();
        assert!(
            err.contains("resnet") && err.contains("vgg19-caffe"),
            "{err}"
        );
    }

    #[test]
    fn digests_match_by_known_prefix() {
        let m = Model::find("vgg19-caffe").unwrap();
        assert!(m.digest_matches(&format!("d01eb7cb{}", "0".repeat(56))));
        assert!(!m.digest_matches(&"0".repeat(64)));
    }
}
