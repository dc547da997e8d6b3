//! Checkpoints: the whole state of a run at an L-BFGS iteration boundary (the schedule
//! position, the image, the curvature history, the best image so far), written as one
//! `.safetensors` file, so that a run stopped by a crash, a reboot or Ctrl-C continues
//! exactly where the checkpoint was taken. It records the SHA-256 of the weights it was
//! made with and a SHA-256 checksum of its own contents, so a checkpoint of another
//! network or a damaged file is refused rather than resumed.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::config::TransferConfig;
use crate::error::{Error, Result};
use crate::image::io::Image;
use crate::objective::parts::LossParts;
use crate::run::inputs::Inputs;
use crate::run::optim::LbfgsState;

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

/// A tensor of a checkpoint: its name, shape and rows (a history is one row a pair, so it
/// is written as it is held, never copied whole).
struct Stored<'a> {
    name: &'static str,
    shape: Vec<usize>,
    rows: Vec<&'a [f32]>,
}

impl<'a> Stored<'a> {
    fn one(name: &'static str, v: &'a [f32]) -> Self {
        Self {
            name,
            shape: vec![v.len()],
            rows: vec![v],
        }
    }

    /// An L-BFGS history of pairs of `n` values.
    fn history(name: &'static str, q: &'a VecDeque<Vec<f32>>, n: usize) -> Self {
        Self {
            name,
            shape: vec![q.len(), n],
            rows: q.iter().map(Vec::as_slice).collect(),
        }
    }

    fn bytes(&self) -> usize {
        4 * self.rows.iter().map(|r| r.len()).sum::<usize>()
    }
}

/// The line the checksum reads before a tensor's data: its name, shape and size in bytes.
fn label(name: &str, shape: &[usize], bytes: usize) -> String {
    format!("{name}{shape:?}{bytes}\n")
}

/// Floats converted to little-endian bytes a block at a time.
const BLOCK: usize = 1 << 14;

/// Gives `out` the little-endian bytes of `values`, a block at a time.
fn le_blocks(
    values: &[f32],
    mut out: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4 * BLOCK];
    for chunk in values.chunks(BLOCK) {
        for (b, v) in buf.chunks_exact_mut(4).zip(chunk) {
            b.copy_from_slice(&v.to_le_bytes());
        }
        out(&buf[..4 * chunk.len()])?;
    }
    Ok(())
}

/// The start of the SHA-256 checksum of a checkpoint: its metadata but the checksum, as
/// `key=value` lines in key order. The tensors follow in name order, each as its
/// [`label`] line and its little-endian data.
fn checksum_start(meta: &HashMap<String, String>) -> sha2::Sha256 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "checksum").collect();
    keys.sort();
    for k in keys {
        h.update(format!("{k}={}\n", meta[k]).as_bytes());
    }
    h
}

fn hex(h: sha2::Sha256) -> String {
    use sha2::Digest;
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically (a temporary file, then a rename), as a
    /// `.safetensors` file streamed from the state: at 8K its history is many gigabytes,
    /// and no second copy of it is made.
    pub fn save(&self, path: &Path) -> Result<()> {
        use sha2::Digest;
        let s = &self.lbfgs;
        let n = s.x.len();
        let one = Stored::one;
        let history = |name, q| Stored::history(name, q, n);
        let ro: Vec<f32> = s.ro.iter().copied().collect();
        let scalars = [s.loss, s.t, s.h_diag, s.lr];
        let mut tensors = vec![
            one("x", &s.x),
            one("grad", &s.grad),
            one("d", &s.d),
            one("prev_grad", &s.prev_grad),
            history("old_dirs", &s.old_dirs),
            history("old_stps", &s.old_stps),
            one("ro", &ro),
            one("scalars", &scalars),
        ];
        let lbfgs_best_loss;
        if let Some((loss, bx, bg)) = &s.best {
            lbfgs_best_loss = [*loss];
            tensors.push(one("lbfgs_best_x", bx));
            tensors.push(one("lbfgs_best_grad", bg));
            tensors.push(one("lbfgs_best_loss", &lbfgs_best_loss));
        }
        let best_loss;
        if let Some((parts, bx)) = &self.best {
            best_loss = [parts.total, parts.content, parts.style, parts.tv];
            tensors.push(one("best_x", bx));
            tensors.push(one("best_loss", &best_loss));
        }
        tensors.sort_by_key(|t| t.name);
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
        // One pass for the checksum (the header holds it), one to write.
        let mut h = checksum_start(&meta);
        for t in &tensors {
            h.update(label(t.name, &t.shape, t.bytes()).as_bytes());
            for row in &t.rows {
                let _ = le_blocks(row, |b| {
                    h.update(b);
                    Ok(())
                });
            }
        }
        meta.insert("checksum".into(), hex(h));
        // The safetensors header: the metadata, then each tensor's dtype, shape and place.
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!(meta));
        let mut offset = 0;
        for t in &tensors {
            let end = offset + t.bytes();
            let info = serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]});
            header.insert(t.name.into(), info);
            offset = end;
        }
        let mut header = serde_json::Value::Object(header).to_string().into_bytes();
        // The data starts 8-byte aligned, as in files the safetensors crate writes.
        header.resize(header.len().next_multiple_of(8), b' ');
        crate::image::io::write_atomically_with(path, |f| {
            f.write_all(&(header.len() as u64).to_le_bytes())?;
            f.write_all(&header)?;
            for t in &tensors {
                for row in &t.rows {
                    le_blocks(row, |b| f.write_all(b))?;
                }
            }
            Ok(())
        })
    }

    /// Reads a checkpoint written by [`Checkpoint::save`], tensor by tensor from the file
    /// (a print-size checkpoint is not read into memory whole before it is taken apart).
    pub fn load(path: &Path) -> Result<Self> {
        use sha2::Digest;
        let io = |e| Error::io(path, e);
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        let not_checkpoint = |why: &str| bad(path, format!("not a checkpoint file ({why})"));
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8)
            .map_err(|_| not_checkpoint("shorter than a header"))?;
        let header_len = u64::from_le_bytes(n8);
        if header_len > 100 << 20 || header_len + 8 > len {
            return Err(not_checkpoint("its header length is impossible"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|_| not_checkpoint("its header is not JSON"))?;
        let meta: HashMap<String, String> = header
            .get("__metadata__")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
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
        // Each tensor's shape and place, in name order (the checksum's order).
        let data_start = 8 + header_len;
        let mut infos = std::collections::BTreeMap::new();
        for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
            let wrong = || bad(path, format!("tensor `{name}` is not described as one"));
            let shape: Vec<usize> =
                serde_json::from_value(info["shape"].clone()).map_err(|_| wrong())?;
            let (begin, end): (u64, u64) =
                serde_json::from_value(info["data_offsets"].clone()).map_err(|_| wrong())?;
            let count = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let fits = end
                .checked_sub(begin)
                .zip(count)
                .is_some_and(|(b, c)| b == 4 * c)
                && data_start + end <= len;
            if info["dtype"] != "F32" || !fits {
                return Err(wrong());
            }
            infos.insert(name.clone(), (shape, begin));
        }
        let mut h = checksum_start(&meta);
        // A history keeps its rows, one a pair; anything else is one row.
        let mut flat: HashMap<String, Vec<f32>> = HashMap::new();
        let mut rows: HashMap<String, Vec<Vec<f32>>> = HashMap::new();
        let mut buf = vec![0u8; 4 * BLOCK];
        for (name, (shape, begin)) in &infos {
            let total: usize = shape.iter().product();
            let (count, row) = match shape[..] {
                [count, row] => (count, row),
                _ => (1, total),
            };
            h.update(label(name, shape, 4 * total).as_bytes());
            file.seek(std::io::SeekFrom::Start(data_start + begin))
                .map_err(io)?;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                let mut v = Vec::with_capacity(row);
                while v.len() < row {
                    let take = (row - v.len()).min(BLOCK);
                    let bytes = &mut buf[..4 * take];
                    file.read_exact(bytes).map_err(io)?;
                    h.update(&*bytes);
                    v.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                }
                values.push(v);
            }
            if shape.len() == 2 {
                rows.insert(name.clone(), values);
            } else {
                flat.insert(name.clone(), values.pop().unwrap_or_default());
            }
        }
        if meta.get("checksum") != Some(&hex(h)) {
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
        let missing = |k: &str| bad(path, format!("tensor `{k}` is missing"));
        let mut need = |k: &str| flat.remove(k).ok_or_else(|| missing(k));
        let x = need("x")?;
        let (grad, d, prev_grad, ro) = (need("grad")?, need("d")?, need("prev_grad")?, need("ro")?);
        let scalars = need("scalars")?;
        if scalars.len() != 4 {
            return Err(bad(path, "tensor `scalars` has the wrong size"));
        }
        let n = x.len();
        let mut history = |k: &str| -> Result<VecDeque<Vec<f32>>> {
            let r = rows.remove(k).ok_or_else(|| missing(k))?;
            if n == 0 || r.iter().any(|row| row.len() != n) {
                return Err(bad(path, format!("tensor `{k}` has the wrong size")));
            }
            Ok(r.into())
        };
        let (old_dirs, old_stps) = (history("old_dirs")?, history("old_stps")?);
        let lbfgs_best = match (
            flat.remove("lbfgs_best_loss"),
            flat.remove("lbfgs_best_x"),
            flat.remove("lbfgs_best_grad"),
        ) {
            (Some(l), Some(bx), Some(bg)) if !l.is_empty() => Some((l[0], bx, bg)),
            _ => None,
        };
        let best = match (flat.remove("best_loss"), flat.remove("best_x")) {
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
                grad,
                d,
                prev_grad,
                old_dirs,
                old_stps,
                ro: ro.into(),
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
