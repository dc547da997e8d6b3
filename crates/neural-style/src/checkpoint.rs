//! Checkpoints: the whole state of a run at an L-BFGS iteration boundary (the schedule
//! position, the image, the curvature history, the best image so far), written as one
//! `.safetensors` file, so that a run stopped by a crash, a reboot or Ctrl-C continues
//! exactly where the checkpoint was taken. It records the SHA-256 of the weights it was
//! made with and a SHA-256 checksum of its own contents, so a checkpoint of another
//! network or a damaged file is refused rather than resumed.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;

use crate::error::{Error, Result};
use crate::events::LossParts;
use crate::optim::LbfgsState;
use crate::run::Inputs;
use crate::{Image, TransferConfig};

/// The format version written in each checkpoint (2: with `weights` and `checksum`).
const VERSION: &str = "2";

/// A run's state at an iteration boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Identifies the settings and images the run was made with.
    pub fingerprint: String,
    /// The identity of the weights ([`crate::Network::identity`]).
    pub weights: String,
    /// The index of the size being optimised in the coarse-to-fine schedule.
    pub stage: usize,
    /// Evaluations made at earlier sizes.
    pub done: usize,
    /// The best loss and image (network input) seen at this size.
    pub best: Option<(LossParts, Vec<f32>)>,
    /// The optimiser.
    pub lbfgs: LbfgsState,
}

/// A fingerprint of everything that decides a run's trajectory: the settings (except how
/// often intermediate images are written) and the input images' pixels.
pub fn fingerprint(config: &TransferConfig, inputs: &Inputs) -> String {
    let config = TransferConfig {
        snapshot_every: 0,
        ..config.clone()
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&config)
        .unwrap_or_default()
        .hash(&mut h);
    let mut image = |img: &Image| {
        (img.width, img.height).hash(&mut h);
        img.data.iter().for_each(|v| v.to_bits().hash(&mut h));
    };
    inputs.content.iter().for_each(&mut image);
    inputs.styles.iter().for_each(&mut image);
    inputs.init.iter().for_each(&mut image);
    if let Some(t) = &inputs.temporal {
        image(&t.previous);
    }
    let confidence = inputs.temporal.as_ref().map(|t| &t.confidence);
    for m in inputs
        .style_masks
        .iter()
        .chain(&inputs.content_mask)
        .chain(confidence)
    {
        (m.width, m.height).hash(&mut h);
        m.data.iter().for_each(|v| v.to_bits().hash(&mut h));
    }
    format!("{:016x}", h.finish())
}

/// SHA-256 (hex) of a checkpoint's metadata (but its checksum) and tensors (names,
/// shapes and little-endian data), each in name order.
fn checksum(
    meta: &HashMap<String, String>,
    tensors: impl IntoIterator<Item = (String, Vec<usize>, Vec<u8>)>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "checksum").collect();
    keys.sort();
    for k in keys {
        h.update(format!("{k}={}\n", meta[k]).as_bytes());
    }
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, shape, data) in tensors {
        h.update(format!("{name}{shape:?}{}\n", data.len()).as_bytes());
        h.update(&data);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let s = &self.lbfgs;
        let n = s.x.len();
        let flat = |q: &VecDeque<Vec<f32>>| -> Vec<f32> { q.iter().flatten().copied().collect() };
        let (dirs, stps) = (flat(&s.old_dirs), flat(&s.old_stps));
        let ro: Vec<f32> = s.ro.iter().copied().collect();
        let scalars = [s.loss, s.t, s.h_diag, s.lr];
        let mut tensors: Vec<(&str, Vec<usize>, &[f32])> = vec![
            ("x", vec![n], &s.x),
            ("grad", vec![n], &s.grad),
            ("d", vec![s.d.len()], &s.d),
            ("prev_grad", vec![s.prev_grad.len()], &s.prev_grad),
            ("old_dirs", vec![s.old_dirs.len(), n], &dirs),
            ("old_stps", vec![s.old_stps.len(), n], &stps),
            ("ro", vec![ro.len()], &ro),
            ("scalars", vec![4], &scalars),
        ];
        let lbfgs_best_loss;
        if let Some((loss, bx, bg)) = &s.best {
            lbfgs_best_loss = [*loss];
            tensors.push(("lbfgs_best_x", vec![n], bx));
            tensors.push(("lbfgs_best_grad", vec![n], bg));
            tensors.push(("lbfgs_best_loss", vec![1], &lbfgs_best_loss));
        }
        let best_loss;
        if let Some((parts, bx)) = &self.best {
            best_loss = [parts.total, parts.content, parts.style, parts.tv];
            tensors.push(("best_x", vec![bx.len()], bx));
            tensors.push(("best_loss", vec![4], &best_loss));
        }
        let mut meta: HashMap<String, String> = [
            ("neural_style_checkpoint", VERSION.to_string()),
            ("fingerprint", self.fingerprint.clone()),
            ("weights", self.weights.clone()),
            ("scale", self.stage.to_string()),
            ("done", self.done.to_string()),
            ("n_iter", s.n_iter.to_string()),
            ("fresh", s.fresh.to_string()),
            ("above", s.above.to_string()),
            ("recoveries", s.recoveries.to_string()),
            ("evaluations", s.evaluations.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let le = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let sum = checksum(
            &meta,
            tensors
                .iter()
                .map(|(name, shape, data)| (name.to_string(), shape.clone(), le(data))),
        );
        meta.insert("checksum".into(), sum);
        let bytes = crate::weights::f32_safetensors(&tensors, meta).map_err(|e| bad(path, e))?;
        crate::image_io::write_atomically(path, &bytes)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(path, format!("not a checkpoint file ({e})")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(path, format!("not a checkpoint file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("neural_style_checkpoint").map(String::as_str) {
            Some(VERSION) => {}
            Some(other) => {
                return Err(bad(
                    path,
                    format!(
                        "written by another version of neural-style (format {other}, this one reads {VERSION}); start the run again without --resume"
                    ),
                ));
            }
            None => return Err(bad(path, "not a neural-style checkpoint")),
        }
        let stored = meta.get("checksum").cloned().unwrap_or_default();
        let actual = checksum(
            &meta,
            st.tensors()
                .into_iter()
                .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec())),
        );
        if stored != actual {
            return Err(bad(
                path,
                "the file is damaged (its SHA-256 checksum does not match its contents)",
            ));
        }
        let get = |k: &str| -> Result<String> {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(path, format!("metadata `{k}` is missing")))
        };
        let int = |k: &str| -> Result<usize> {
            get(k)?
                .parse()
                .map_err(|_| bad(path, format!("metadata `{k}` is not a number")))
        };
        let tensor = |k: &str| -> Result<Option<Vec<f32>>> {
            match st.tensor(k) {
                Ok(t) => Ok(Some(
                    t.data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )),
                Err(_) => Ok(None),
            }
        };
        let need = |k: &str| -> Result<Vec<f32>> {
            tensor(k)?.ok_or_else(|| bad(path, format!("tensor `{k}` is missing")))
        };
        let x = need("x")?;
        let n = x.len();
        let rows = |k: &str| -> Result<VecDeque<Vec<f32>>> {
            let v = need(k)?;
            if n == 0 || v.len() % n != 0 {
                return Err(bad(path, format!("tensor `{k}` has the wrong size")));
            }
            Ok(v.chunks_exact(n).map(<[f32]>::to_vec).collect())
        };
        let scalars = need("scalars")?;
        if scalars.len() != 4 {
            return Err(bad(path, "tensor `scalars` has the wrong size"));
        }
        let lbfgs_best = match (
            tensor("lbfgs_best_loss")?,
            tensor("lbfgs_best_x")?,
            tensor("lbfgs_best_grad")?,
        ) {
            (Some(l), Some(bx), Some(bg)) if !l.is_empty() => Some((l[0], bx, bg)),
            _ => None,
        };
        let best = match (tensor("best_loss")?, tensor("best_x")?) {
            (Some(l), Some(bx)) if l.len() == 4 => Some((
                LossParts {
                    total: l[0],
                    content: l[1],
                    style: l[2],
                    tv: l[3],
                    ..LossParts::default()
                },
                bx,
            )),
            _ => None,
        };
        Ok(Self {
            fingerprint: get("fingerprint")?,
            weights: get("weights")?,
            stage: int("scale")?,
            done: int("done")?,
            best,
            lbfgs: LbfgsState {
                grad: need("grad")?,
                d: need("d")?,
                prev_grad: need("prev_grad")?,
                old_dirs: rows("old_dirs")?,
                old_stps: rows("old_stps")?,
                ro: need("ro")?.into(),
                loss: scalars[0],
                t: scalars[1],
                h_diag: scalars[2],
                lr: scalars[3],
                n_iter: int("n_iter")?,
                fresh: get("fresh")? == "true",
                best: lbfgs_best,
                above: int("above")?,
                recoveries: int("recoveries")?,
                evaluations: int("evaluations")?,
                x,
            },
        })
    }
}
