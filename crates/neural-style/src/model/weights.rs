//! Loading VGG weights from `.safetensors` and PyTorch `.pth` files, in torchvision key
//! layout (`features.N.weight`) or named layout (`conv1_1.weight`), with validation of
//! shapes, coverage and finiteness before anything runs.
//!
//! One file of ~550 lines of code (plus its tests): both formats feed the same key mapping
//! and the same checks, which are the point of this module.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::tensor_file::{HeaderError, read_header};
use crate::model::vgg::{Arch, ConvParams, InputConvention, Layer, LayerKind};

/// Element types a weight tensor may be stored in.
#[derive(Debug, Clone, Copy)]
enum Dtype {
    F32,
    F64,
    F16,
    BF16,
}

type ReadFn = Box<dyn Fn() -> std::io::Result<Vec<u8>>>;

struct Entry {
    dtype: Option<Dtype>,
    dtype_name: String,
    shape: Vec<usize>,
    read: ReadFn,
}

/// An opened weights file: its tensors (read on demand) and what its metadata says.
pub struct WeightFile {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
}

/// What a weights file provides, after looking at its keys and metadata.
#[derive(Debug, Clone)]
pub struct WeightsInfo {
    /// The file.
    pub path: PathBuf,
    /// The architecture (from metadata `arch`, else from which convolutions are present).
    pub arch: Arch,
    /// The input convention from metadata, if the file records one.
    pub convention: Option<InputConvention>,
    /// The convolutions present, in network order.
    pub convs: Vec<Layer>,
}

impl WeightFile {
    /// Opens a weights file, reading its header (tensor data is read when needed).
    pub fn open(path: &Path) -> Result<Self> {
        // A pipe would block forever and a device has no end: only files are read.
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(format_error(
                path,
                "not a regular file (a directory, device, pipe or socket)",
            ));
        }
        let mut magic = [0u8; 9];
        let n = std::fs::File::open(path)
            .and_then(|mut f| read_up_to(&mut f, &mut magic))
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Err(format_error(path, "the file is empty"));
        }
        // safetensors: an 8-byte header length, then the JSON header.
        if n == 9 && magic[8] == b'{' {
            Self::open_safetensors(path)
        } else {
            Self::open_pytorch(path)
        }
    }

    /// Reads the header only; each tensor's bytes are read from the file when needed, so a
    /// run reads just the convolutions it uses.
    fn open_safetensors(path: &Path) -> Result<Self> {
        let damaged = |why: String| {
            format_error(
                path,
                format!(
                    "it looks like a safetensors file, but its header is damaged or the file is \
                     truncated ({why})"
                ),
            )
        };
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let header = read_header(&mut file, file_len).map_err(|e| match e {
            HeaderError::Io(e) => Error::io(path, e),
            HeaderError::Damaged(why) => damaged(why),
        })?;
        let file = std::sync::Arc::new(std::sync::Mutex::new(file));
        let mut entries = HashMap::new();
        for t in header.tensors {
            let dtype = match t.dtype {
                safetensors::Dtype::F32 => Some(Dtype::F32),
                safetensors::Dtype::F64 => Some(Dtype::F64),
                safetensors::Dtype::F16 => Some(Dtype::F16),
                safetensors::Dtype::BF16 => Some(Dtype::BF16),
                _ => None,
            };
            let (start, end) = (t.start, t.end);
            let file = file.clone();
            entries.insert(
                t.name,
                Entry {
                    dtype,
                    dtype_name: format!("{:?}", t.dtype),
                    shape: t.shape,
                    read: Box::new(move || {
                        use std::io::Seek;
                        let mut buf = vec![0u8; (end - start) as usize];
                        let mut f = file
                            .lock()
                            .map_err(|_| std::io::Error::other("the file lock was poisoned"))?;
                        f.seek(std::io::SeekFrom::Start(start))?;
                        f.read_exact(&mut buf)?;
                        Ok(buf)
                    }),
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            metadata: header.metadata,
        })
    }

    fn open_pytorch(path: &Path) -> Result<Self> {
        let reader = pytorch_reader::PytorchReader::new(path)
            .map_err(|e| format_error(path, format!("cannot read PyTorch checkpoint: {e}")))?;
        let mut entries = HashMap::new();
        for (name, t) in reader.into_tensors() {
            let dtype = match t.dtype() {
                pytorch_reader::DType::F32 => Some(Dtype::F32),
                pytorch_reader::DType::F64 => Some(Dtype::F64),
                pytorch_reader::DType::F16 => Some(Dtype::F16),
                pytorch_reader::DType::BF16 => Some(Dtype::BF16),
                _ => None,
            };
            let dtype_name = format!("{:?}", t.dtype());
            let shape = t.shape().to_vec();
            entries.insert(
                name,
                Entry {
                    dtype,
                    dtype_name,
                    shape,
                    read: Box::new(move || t.read()),
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
            metadata: HashMap::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Key under which `conv`'s `suffix` ("weight" or "bias") is stored, if any.
    fn key(&self, arch: Arch, conv: Layer, suffix: &str) -> Option<String> {
        let mut candidates = Vec::new();
        if let Some(i) = arch.feature_index(conv) {
            candidates.push(format!("features.{i}.{suffix}"));
        }
        candidates.push(format!("{}.{suffix}", conv.name()));
        for c in candidates {
            for prefix in ["", "module.", "model.", "vgg.", "net."] {
                let k = format!("{prefix}{c}");
                if self.entries.contains_key(&k) {
                    return Some(k);
                }
            }
        }
        None
    }

    /// Looks at keys and metadata: architecture, convention, convolutions present.
    pub fn info(&self, arch_override: Option<Arch>) -> Result<WeightsInfo> {
        let arch = match arch_override {
            Some(a) => a,
            None => match self.metadata.get("arch") {
                Some(a) => a.parse().map_err(|_| {
                    format_error(
                        &self.path,
                        format!("metadata `arch` is `{a}`, not vgg16 or vgg19"),
                    )
                })?,
                None => self.guess_arch(),
            },
        };
        let convs: Vec<Layer> = arch
            .layers()
            .into_iter()
            .filter(|l| l.kind() == LayerKind::Conv && self.key(arch, *l, "weight").is_some())
            .collect();
        if convs.is_empty() {
            let mut keys: Vec<&String> = self.entries.keys().collect();
            keys.sort();
            let shown: Vec<&str> = keys.iter().take(6).map(|s| s.as_str()).collect();
            return Err(format_error(
                &self.path,
                format!(
                    "no VGG convolution found (expected keys like `features.0.weight` or \
                     `conv1_1.weight`; the file has {} tensors, e.g. {})",
                    keys.len(),
                    if shown.is_empty() {
                        "none".to_string()
                    } else {
                        shown.join(", ")
                    }
                ),
            ));
        }
        Ok(WeightsInfo {
            path: self.path.clone(),
            arch,
            convention: self.convention()?,
            convs,
        })
    }

    fn guess_arch(&self) -> Arch {
        // conv3_4 exists only in VGG19 (features.16); conv4_1 of VGG16 is features.17.
        let has = |k: &str| {
            ["", "module.", "model.", "vgg.", "net."]
                .iter()
                .any(|p| self.entries.contains_key(&format!("{p}{k}")))
        };
        if has("features.16.weight") || has("conv3_4.weight") {
            Arch::Vgg19
        } else if has("features.17.weight") || has("conv4_1.weight") {
            Arch::Vgg16
        } else {
            Arch::Vgg19
        }
    }

    fn convention(&self) -> Result<Option<InputConvention>> {
        let Some(input) = self.metadata.get("input") else {
            return Ok(None);
        };
        match input.as_str() {
            "torch-rgb-01" => Ok(Some(InputConvention::TorchRgb01)),
            "caffe-bgr-255" => {
                let mean_bgr = match self.metadata.get("mean_bgr") {
                    None => crate::model::vgg::CAFFE_MEAN_BGR,
                    Some(m) => parse_mean(m).ok_or_else(|| {
                        format_error(
                            &self.path,
                            format!("metadata `mean_bgr` is `{m}`, expected three numbers like `103.9,116.8,123.7`"),
                        )
                    })?,
                };
                Ok(Some(InputConvention::CaffeBgr255 { mean_bgr }))
            }
            other => Err(format_error(
                &self.path,
                format!("metadata `input` is `{other}`, expected torch-rgb-01 or caffe-bgr-255"),
            )),
        }
    }

    /// Reads and checks the convolutions needed to compute every layer of `wanted`.
    pub fn conv_params(&self, arch: Arch, wanted: &[Layer]) -> Result<Vec<ConvParams>> {
        for l in wanted {
            arch.check_layer(*l)?;
        }
        let Some(deepest) = wanted.iter().copied().max() else {
            return Ok(Vec::new());
        };
        let needed: Vec<Layer> = arch
            .layers()
            .into_iter()
            .filter(|l| l.kind() == LayerKind::Conv && *l <= deepest.source_conv(arch))
            .collect();
        let missing: Vec<Layer> = needed
            .iter()
            .copied()
            .filter(|c| {
                self.key(arch, *c, "weight").is_none() || self.key(arch, *c, "bias").is_none()
            })
            .collect();
        if !missing.is_empty() {
            let first_missing = missing[0];
            let mut requested: Vec<String> = wanted
                .iter()
                .filter(|l| l.source_conv(arch) >= first_missing)
                .map(|l| l.name().to_string())
                .collect();
            requested.dedup();
            let available = arch
                .layers()
                .into_iter()
                .filter(|l| l.kind() == LayerKind::Conv && self.key(arch, *l, "weight").is_some())
                .map(|l| l.name().to_string())
                .collect();
            return Err(Error::MissingLayers {
                path: self.path.clone(),
                requested,
                missing: missing.iter().map(|l| l.name().to_string()).collect(),
                available,
            });
        }
        let mut in_channels = 3;
        let mut params = Vec::with_capacity(needed.len());
        for conv in needed {
            let key = |kind: &str| {
                self.key(arch, conv, kind)
                    .filter(|k| self.entries.contains_key(k))
                    .ok_or_else(|| Error::WeightsFormat {
                        path: self.path.clone(),
                        message: format!("no {kind} tensor for {conv}"),
                    })
            };
            let (wkey, bkey) = (key("weight")?, key("bias")?);
            let wshape = &self.entries[&wkey].shape;
            if wshape.len() != 4 || wshape[1] != in_channels || wshape[2] != 3 || wshape[3] != 3 {
                return Err(Error::ShapeMismatch {
                    path: self.path.clone(),
                    tensor: wkey,
                    expected: format!("[out, {in_channels}, 3, 3] for {conv}"),
                    found: wshape.clone(),
                });
            }
            let out_channels = wshape[0];
            let bshape = &self.entries[&bkey].shape;
            if bshape.as_slice() != [out_channels] {
                return Err(Error::ShapeMismatch {
                    path: self.path.clone(),
                    tensor: bkey,
                    expected: format!("[{out_channels}] for {conv}"),
                    found: bshape.clone(),
                });
            }
            let weight = self.read_f32(&wkey)?;
            let bias = self.read_f32(&bkey)?;
            params.push(ConvParams {
                layer: conv,
                weight,
                bias,
                out_channels,
                in_channels,
            });
            in_channels = out_channels;
        }
        Ok(params)
    }

    fn read_f32(&self, key: &str) -> Result<Vec<f32>> {
        let entry = &self.entries[key];
        let dtype = entry.dtype.ok_or_else(|| {
            format_error(
                &self.path,
                format!(
                    "tensor `{key}` has element type {}, expected a float type",
                    entry.dtype_name
                ),
            )
        })?;
        let bytes = (entry.read)()
            .map_err(|e| format_error(&self.path, format!("cannot read tensor `{key}`: {e}")))?;
        let n: usize = entry.shape.iter().product();
        let size = match dtype {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::F16 | Dtype::BF16 => 2,
        };
        if bytes.len() != n * size {
            return Err(format_error(
                &self.path,
                format!(
                    "tensor `{key}` holds {} bytes, expected {}",
                    bytes.len(),
                    n * size
                ),
            ));
        }
        let values: Vec<f32> = match dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFiniteWeights {
                path: self.path.clone(),
                tensor: key.to_string(),
            });
        }
        Ok(values)
    }
}

impl WeightFile {
    /// Writes the convolutions of this file (all those present from `conv1_1` on, checked
    /// as [`WeightFile::conv_params`] checks them) to `out` as a conv-only f32
    /// `.safetensors` with torchvision keys (`features.N.weight`, `features.N.bias`) and
    /// metadata `arch`, and `input`/`mean_bgr` when `convention` (or the file's own
    /// metadata) gives one. The file is written atomically. Returns what was written.
    pub fn write_conv_safetensors(
        &self,
        arch_override: Option<Arch>,
        convention: Option<InputConvention>,
        out: &Path,
    ) -> Result<WeightsInfo> {
        let info = self.info(arch_override)?;
        let arch = info.arch;
        // The convolutions that form an unbroken chain from conv1_1.
        let chain: Vec<Layer> = arch
            .layers()
            .into_iter()
            .filter(|l| l.kind() == LayerKind::Conv)
            .take_while(|l| info.convs.contains(l))
            .collect();
        let Some(deepest) = chain.last().copied() else {
            return Err(format_error(&self.path, "the file has no `conv1_1`"));
        };
        let params = self.conv_params(arch, &[deepest])?;
        let names: Vec<(String, String)> = params
            .iter()
            .map(|p| {
                let index = arch.feature_index(p.layer).unwrap_or_default();
                (
                    format!("features.{index}.weight"),
                    format!("features.{index}.bias"),
                )
            })
            .collect();
        let tensors: Vec<(&str, Vec<usize>, &[f32])> = params
            .iter()
            .zip(&names)
            .flat_map(|(p, (w, b))| {
                [
                    (
                        w.as_str(),
                        vec![p.out_channels, p.in_channels, 3, 3],
                        p.weight.as_slice(),
                    ),
                    (b.as_str(), vec![p.out_channels], p.bias.as_slice()),
                ]
            })
            .collect();
        let mut metadata = HashMap::new();
        metadata.insert("arch".to_string(), arch.to_string());
        match convention.or(info.convention) {
            Some(InputConvention::TorchRgb01) => {
                metadata.insert("input".to_string(), "torch-rgb-01".to_string());
            }
            Some(InputConvention::CaffeBgr255 { mean_bgr }) => {
                metadata.insert("input".to_string(), "caffe-bgr-255".to_string());
                metadata.insert(
                    "mean_bgr".to_string(),
                    format!("{},{},{}", mean_bgr[0], mean_bgr[1], mean_bgr[2]),
                );
            }
            None => {}
        }
        let bytes = f32_safetensors(&tensors, metadata).map_err(|e| format_error(out, e))?;
        crate::image::io::write_atomically(out, &bytes)?;
        Ok(WeightsInfo {
            path: out.to_path_buf(),
            arch,
            convention: convention.or(info.convention),
            convs: chain,
        })
    }
}

/// `.safetensors` bytes holding f32 tensors (name, shape, values) and `metadata`; the
/// error says which tensor could not be stored.
pub(crate) fn f32_safetensors(
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.to_string(), v))
                .map_err(|e| format!("cannot store tensor `{name}`: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    safetensors::serialize(views, &Some(metadata)).map_err(|e| format!("cannot serialise: {e}"))
}

fn parse_mean(s: &str) -> Option<[f32; 3]> {
    let v: Vec<f32> = s
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 3 && v.iter().all(|x| x.is_finite())).then(|| [v[0], v[1], v[2]])
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn format_error(path: &Path, message: impl Into<String>) -> Error {
    Error::WeightsFormat {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Writes a safetensors file with the given f32 tensors (name, shape, fill value).
    fn write(
        dir: &Path,
        name: &str,
        tensors: &[(&str, Vec<usize>, f32)],
        meta: Option<HashMap<String, String>>,
    ) -> PathBuf {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(k, shape, v)| {
                let n: usize = shape.iter().product();
                (
                    k.to_string(),
                    shape.clone(),
                    std::iter::repeat_n(*v, n)
                        .flat_map(f32::to_le_bytes)
                        .collect(),
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(k, s, b)| {
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        let path = dir.join(name);
        safetensors::serialize_to_file(views, &meta, &path).unwrap();
        path
    }

    #[test]
    fn named_layout_and_metadata_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let meta = HashMap::from([
            ("input".to_string(), "caffe-bgr-255".to_string()),
            ("mean_bgr".to_string(), "1,2,3".to_string()),
        ]);
        let p = write(
            dir.path(),
            "named.safetensors",
            &[
                ("conv1_1.weight", vec![4, 3, 3, 3], 0.1),
                ("conv1_1.bias", vec![4], 0.0),
            ],
            Some(meta),
        );
        let f = WeightFile::open(&p).unwrap();
        let info = f.info(None).unwrap();
        assert_eq!(info.convs, vec![Layer::Conv1_1]);
        assert_eq!(
            info.convention,
            Some(InputConvention::CaffeBgr255 {
                mean_bgr: [1.0, 2.0, 3.0]
            })
        );
        let params = f.conv_params(info.arch, &[Layer::Relu1_1]).unwrap();
        assert_eq!((params[0].out_channels, params[0].in_channels), (4, 3));
    }

    #[test]
    fn a_wrong_shape_names_the_tensor_and_both_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "bad.safetensors",
            &[
                ("features.0.weight", vec![4, 3, 3, 3], 0.1),
                ("features.0.bias", vec![4], 0.0),
                ("features.2.weight", vec![4, 5, 3, 3], 0.1),
                ("features.2.bias", vec![4], 0.0),
            ],
            None,
        );
        let f = WeightFile::open(&p).unwrap();
        let e = f
            .conv_params(Arch::Vgg19, &[Layer::Relu1_2])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("features.2.weight")
                && e.contains("[4, 5, 3, 3]")
                && e.contains("[out, 4, 3, 3]"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_values_and_missing_biases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "nan.safetensors",
            &[
                ("features.0.weight", vec![4, 3, 3, 3], f32::NAN),
                ("features.0.bias", vec![4], 0.0),
            ],
            None,
        );
        let e = WeightFile::open(&p)
            .unwrap()
            .conv_params(Arch::Vgg19, &[Layer::Conv1_1])
            .unwrap_err();
        assert!(
            matches!(e, Error::NonFiniteWeights { ref tensor, .. } if tensor == "features.0.weight"),
            "{e}"
        );
        let p = write(
            dir.path(),
            "nobias.safetensors",
            &[("features.0.weight", vec![4, 3, 3, 3], 0.1)],
            None,
        );
        let e = WeightFile::open(&p)
            .unwrap()
            .conv_params(Arch::Vgg19, &[Layer::Conv1_1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing conv1_1"), "{e}");
    }

    #[test]
    fn files_that_are_not_weights_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pth");
        std::fs::write(&p, b"").unwrap();
        let e = WeightFile::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("empty.pth") && e.contains("empty"), "{e}");
        let p = dir.path().join("noise.pth");
        std::fs::write(&p, b"PK\x03\x04 definitely not a zip").unwrap();
        let e = WeightFile::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("noise.pth"), "{e}");
        let p = write(
            dir.path(),
            "other.safetensors",
            &[("encoder.weight", vec![2, 2], 1.0)],
            None,
        );
        let e = WeightFile::open(&p)
            .unwrap()
            .info(None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no VGG convolution") && e.contains("encoder.weight"),
            "{e}"
        );
    }
}
