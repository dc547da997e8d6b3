//! What a client sets for one job (`JobSettings`, the web API's part of a run's settings),
//! the server's limits on it, and its translation into the library's checked
//! [`TransferConfig`].

use neural_style::config::SIDES;
use neural_style::{CheckedConfig, Decoding, Image, Init, PreserveColors, Size, TransferConfig};
use serde::{Deserialize, Serialize};

/// Why a job's settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A setting outside what the server allows.
    #[error("{setting}: {value} is not allowed; use {allowed}")]
    OutOfRange {
        /// The setting.
        setting: &'static str,
        /// The value sent.
        value: String,
        /// The allowed range.
        allowed: String,
    },
    /// The library refused the resulting configuration.
    #[error(transparent)]
    Config(#[from] neural_style::Error),
}

/// The settings a client sends with a job; anything left out takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Longest side of the result in pixels.
    pub size: u32,
    /// L-BFGS loss evaluations at the first size of the coarse-to-fine schedule.
    pub iterations: usize,
    /// Style strength: the style weight is the default one times `10^style_strength`
    /// (0: the defaults, +1: ten times more style, -1: ten times less), so one slider
    /// moves the style/content ratio.
    pub style_strength: f32,
    /// Keep the photo's colours.
    pub preserve_colors: Option<PreserveColors>,
    /// Start from the photo (`false`) or from noise made from `seed` (`true`).
    pub from_noise: bool,
    /// Seed of the noise start.
    pub seed: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            size: 384,
            iterations: 200,
            style_strength: 0.0,
            preserve_colors: None,
            from_noise: false,
            seed: 0,
        }
    }
}

/// The range the style-strength slider covers (log10 of the style-weight factor).
pub const STYLE_STRENGTH_RANGE: (f32, f32) = (-3.0, 3.0);

/// What the server accepts from a client.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// Largest `size`.
    pub max_size: u32,
    /// Largest `iterations`.
    pub max_iterations: usize,
    /// Most style images in one job.
    pub max_styles: usize,
    /// Largest request body (all uploads of a job together), bytes.
    pub max_upload_bytes: usize,
    /// Largest decoded image, pixels (the CLI's `--max-input-pixels`).
    pub max_input_pixels: u64,
    /// Use what decodes of a damaged upload instead of refusing it (`--accept-damaged`).
    pub accept_damaged: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: 1024,
            max_iterations: 2000,
            max_styles: 4,
            max_upload_bytes: 50 << 20,
            max_input_pixels: neural_style::DEFAULT_MAX_INPUT_PIXELS,
            accept_damaged: false,
        }
    }
}

impl Limits {
    /// Decodes an uploaded image (`name` for messages) within these limits: at most
    /// `max_input_pixels`, damaged ones only with `accept_damaged`, and shrunk to twice the
    /// largest size, since no job uses more. The server and the queue's workers decode the
    /// same bytes the same way.
    pub fn decode_upload(&self, bytes: &[u8], name: &str) -> neural_style::Result<Image> {
        let side = self.max_size.saturating_mul(2);
        let decoding = Decoding {
            accept_damaged: self.accept_damaged,
            side_used: side,
            ..Decoding::within(self.max_input_pixels)
        };
        Image::decode_within(bytes, std::path::Path::new(name), decoding, side)
    }
}

impl Limits {
    /// A whole configuration a job brings (a `batch --queue` pair's) against these limits,
    /// as a page's settings are checked: its longest side, its evaluations and its style
    /// images. A worker checks again what it takes, whoever queued it.
    pub fn check_config(
        &self,
        config: &TransferConfig,
        styles: usize,
    ) -> Result<(), SettingsError> {
        let refuse = |setting, value: String, allowed: String| {
            Err(SettingsError::OutOfRange {
                setting,
                value,
                allowed,
            })
        };
        let side = match config.size {
            Size::Longest(n) => n,
            Size::Exact(w, h) => w.max(h),
        };
        if side > self.max_size {
            let allowed = format!("{}..={} pixels", SIDES.start(), self.max_size);
            return refuse("size", config.size.to_string(), allowed);
        }
        if config.iterations > self.max_iterations {
            let allowed = format!("1..={}", self.max_iterations);
            return refuse("iterations", config.iterations.to_string(), allowed);
        }
        if styles > self.max_styles {
            let allowed = format!("at most {} style images", self.max_styles);
            return refuse("style", styles.to_string(), allowed);
        }
        Ok(())
    }
}

impl JobSettings {
    /// The run's configuration, checked: `base` (the server's settings) with these settings
    /// applied, for `styles` style images; `default_style` is the style weight that style
    /// strength 0 means on the server's network ([`neural_style::Network::loss_weights`]).
    /// The error names the setting and the allowed range.
    pub fn to_config(
        &self,
        base: &TransferConfig,
        default_style: f32,
        styles: usize,
        limits: &Limits,
    ) -> Result<CheckedConfig, SettingsError> {
        let refuse = |setting, value: &dyn std::fmt::Display, allowed: String| {
            Err(SettingsError::OutOfRange {
                setting,
                value: value.to_string(),
                allowed,
            })
        };
        let sides = *SIDES.start()..=limits.max_size;
        if !sides.contains(&self.size) {
            let allowed = format!("{}..={} pixels", sides.start(), sides.end());
            return refuse("size", &self.size, allowed);
        }
        if !(1..=limits.max_iterations).contains(&self.iterations) {
            let allowed = format!("1..={}", limits.max_iterations);
            return refuse("iterations", &self.iterations, allowed);
        }
        let (lo, hi) = STYLE_STRENGTH_RANGE;
        if !(lo..=hi).contains(&self.style_strength) {
            return refuse(
                "style_strength",
                &self.style_strength,
                format!("{lo}..={hi}"),
            );
        }
        let config = TransferConfig {
            size: Size::Longest(self.size),
            iterations: self.iterations,
            style_weight: Some(default_style * 10f32.powf(self.style_strength)),
            preserve_colors: self.preserve_colors,
            init: if self.from_noise {
                Init::Noise
            } else {
                Init::Content
            },
            seed: self.seed,
            // Every evaluation offers a preview; the server encodes a few per second.
            snapshot_every: 1,
            ..base.clone()
        };
        Ok(config.check(styles)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The style weight style strength 0 means in these tests.
    const BASE: f32 = 10.0;

    fn config(s: &JobSettings) -> Result<TransferConfig, String> {
        s.to_config(&TransferConfig::default(), BASE, 1, &Limits::default())
            .map(|c| c.get().clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn style_strength_scales_the_default_style_weight() {
        let plain = config(&JobSettings::default()).unwrap();
        assert_eq!(plain.style_weight, Some(BASE));
        let strong = config(&JobSettings {
            style_strength: 1.0,
            ..JobSettings::default()
        })
        .unwrap();
        assert!((strong.style_weight.unwrap() / BASE - 10.0).abs() < 1e-4);
        assert_eq!(
            strong.content_weight, None,
            "content weight stays the default"
        );
    }

    #[test]
    fn settings_outside_the_limits_are_refused_with_the_range() {
        let too_big = JobSettings {
            size: 5000,
            ..JobSettings::default()
        };
        assert_eq!(
            config(&too_big).unwrap_err(),
            "size: 5000 is not allowed; use 16..=1024 pixels"
        );
        let none = JobSettings {
            iterations: 0,
            ..JobSettings::default()
        };
        assert!(config(&none).unwrap_err().starts_with("iterations: 0"));
        let wild = JobSettings {
            style_strength: f32::NAN,
            ..JobSettings::default()
        };
        assert!(config(&wild).unwrap_err().starts_with("style_strength"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<JobSettings>(r#"{"size": 64, "path": "/etc"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `path`"), "{e}");
    }
}
