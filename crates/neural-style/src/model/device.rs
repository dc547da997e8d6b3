//! Where the tensors live: burn's pure-Rust `flex` CPU backend (always built), or a GPU
//! through burn's `wgpu` backend (Vulkan, Metal, DX12: any GPU) or its `cuda` backend when
//! the crate is built with the `wgpu` or `cuda` feature. The engine itself is the same code
//! on every device; only the device handed to [`crate::Network::load`] changes.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which device a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A GPU when this build has a GPU backend and one answers, else the CPU.
    #[default]
    Auto,
    /// The CPU (`flex`).
    Cpu,
    /// A GPU; an error when this build has no GPU backend or none answers.
    Gpu,
}

/// The environment variable that sets [`default_device`]'s choice (`cpu`, `gpu`, `auto`);
/// the tests use it to run on each backend of a GPU build.
pub const DEVICE_ENV: &str = "NEURAL_STYLE_DEVICE";

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => Err(Error::config(
                "device",
                format!("unknown device `{other}` (known: auto, cpu, gpu)"),
            )),
        }
    }
}

/// The GPU backends compiled into this build, in the order they are tried.
pub fn gpu_backends() -> &'static [&'static str] {
    &[
        #[cfg(feature = "cuda")]
        "cuda",
        #[cfg(feature = "wgpu")]
        "wgpu",
    ]
}

/// The CPU device, with autodiff.
pub fn cpu() -> Device {
    Device::flex().autodiff()
}

/// A GPU device of `backend` (one of [`gpu_backends`]), with autodiff, if it answers: a
/// small computation is run on it, and a backend that finds no adapter (which burn reports
/// by panicking) counts as absent.
pub fn gpu(backend: &str) -> Option<Device> {
    let make = || -> Option<Device> {
        match backend {
            #[cfg(feature = "cuda")]
            "cuda" => Some(Device::cuda(0).autodiff()),
            #[cfg(feature = "wgpu")]
            "wgpu" => Some(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff()),
            _ => None,
        }
    };
    let probe = std::panic::catch_unwind(|| {
        let device = make()?;
        let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        let sum = x.sum().into_scalar::<f32>();
        (sum == 6.0).then_some(device)
    });
    probe.ok().flatten()
}

/// The device for `choice`, and the name of its backend (`flex`, `cuda` or `wgpu`).
pub fn device(choice: DeviceChoice) -> Result<(Device, &'static str)> {
    match choice {
        DeviceChoice::Cpu => Ok((cpu(), "flex")),
        DeviceChoice::Auto => Ok(gpu_backends()
            .iter()
            .find_map(|b| gpu(b).map(|d| (d, *b)))
            .unwrap_or_else(|| (cpu(), "flex"))),
        DeviceChoice::Gpu => {
            if gpu_backends().is_empty() {
                return Err(Error::Device(
                    "this build has no GPU backend; build with `--features wgpu` (any GPU) or `--features cuda` (NVIDIA)".into(),
                ));
            }
            gpu_backends()
                .iter()
                .find_map(|b| gpu(b).map(|d| (d, *b)))
                .ok_or_else(|| {
                    Error::Device(format!(
                        "no GPU answered on {} (no driver or adapter found); the CPU device works everywhere",
                        gpu_backends().join(" or ")
                    ))
                })
        }
    }
}

/// The device runs use by default: `$NEURAL_STYLE_DEVICE` (`cpu`, `gpu`, `auto`) if set,
/// else `auto` (the CPU in a build without GPU backends). Falls back to the CPU when the
/// choice cannot be met.
pub fn default_device() -> Device {
    let choice = std::env::var(DEVICE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    device(choice).map_or_else(|_| cpu(), |(d, _)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_the_cpu_always_works() {
        assert_eq!("GPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Gpu);
        assert!("tpu".parse::<DeviceChoice>().is_err());
        let (_, name) = device(DeviceChoice::Cpu).unwrap();
        assert_eq!(name, "flex");
        if gpu_backends().is_empty() {
            assert!(device(DeviceChoice::Gpu).is_err());
            assert_eq!(device(DeviceChoice::Auto).unwrap().1, "flex");
        }
    }
}
