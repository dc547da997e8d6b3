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
use crate::model::tensor_file::{HeaderError, TensorEntry, read_header};
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
    // Under the settings' former names, so checkpoints of earlier versions still resume.
    config.identity_json().hash(&mut h);
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
        let mut best_loss = None;
        if let Some((parts, bx)) = &self.best {
            tensors.push(one("best_x", bx));
            // The loss terms as the library serialises them (the temporal term too).
            best_loss = Some(serde_json::to_string(parts).map_err(|e| bad(path, e.to_string()))?);
        }
        tensors.sort_by_key(|t| t.name);
        let mut meta: HashMap<String, String> = [
            ("neural_style_checkpoint", VERSION.to_string()),
            ("fingerprint", self.fingerprint.clone()),
            ("weights", self.weights.clone()),
            ("stage", self.stage.to_string()),
            ("done", self.done.to_string()),
            ("n_iter", s.n_iter.to_string()),
            ("fresh", s.fresh.to_string()),
            ("above", s.above.to_string()),
            ("recoveries", s.recoveries.to_string()),
            ("evaluations", s.evaluations.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(best_loss.map(|b| ("best_loss".to_string(), b)))
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
    /// Checkpoints written before the stage key and the best loss terms were renamed
    /// (`scale`, a `best_loss` tensor of four) read the same.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |e| Error::io(path, e);
        // A pipe would block the open until a writer comes, and a folder or a device is
        // no checkpoint: only regular files are read.
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(bad(
                path,
                "not a regular file (a folder, device, pipe or socket): give the checkpoint file",
            ));
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        let header = read_header(&mut file, len).map_err(|e| match e {
            HeaderError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bad(path, "not a checkpoint file (it ends inside its header)")
            }
            HeaderError::Io(e) => io(e),
            HeaderError::Damaged(why) => bad(path, format!("not a checkpoint file ({why})")),
        })?;
        let meta = header.metadata;
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
        let (mut flat, mut rows) = read_tensors(path, &mut file, &meta, &header.tensors)?;
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
        let best_loss =
            match (meta.get("best_loss"), flat.remove("best_loss")) {
                (Some(json), _) => Some(serde_json::from_str(json).map_err(|e| {
                    bad(path, format!("metadata `best_loss` is not loss terms: {e}"))
                })?),
                (None, Some(l)) if l.len() == 4 => Some(LossParts {
                    total: l[0],
                    content: l[1],
                    style: l[2],
                    tv: l[3],
                    ..LossParts::default()
                }),
                _ => None,
            };
        let best = best_loss.zip(flat.remove("best_x"));
        let stage = if meta.contains_key("stage") {
            int("stage")?
        } else {
            int("scale")?
        };
        Ok(Self {
            fingerprint: get("fingerprint")?,
            weights: get("weights")?,
            stage,
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

/// A checkpoint's tensors: those of two dimensions (an L-BFGS history) as rows, the others
/// flat. Every tensor must be F32; the checksum over `meta` and the data must match.
type Tensors = (HashMap<String, Vec<f32>>, HashMap<String, Vec<Vec<f32>>>);

/// Reads `tensors` (in name order, the checksum's order) from `file` block by block.
fn read_tensors(
    path: &Path,
    file: &mut (impl Read + Seek),
    meta: &HashMap<String, String>,
    tensors: &[TensorEntry],
) -> Result<Tensors> {
    use sha2::Digest;
    let mut h = checksum_start(meta);
    let mut flat = HashMap::new();
    let mut rows = HashMap::new();
    let mut buf = vec![0u8; 4 * BLOCK];
    for t in tensors {
        if t.dtype != safetensors::Dtype::F32 {
            return Err(bad(path, format!("tensor `{}` is not F32", t.name)));
        }
        let total: usize = t.shape.iter().product();
        let (count, row) = match t.shape[..] {
            [count, row] => (count, row),
            _ => (1, total),
        };
        // A history holds at most the longest L-BFGS history, of non-empty rows: checked
        // before anything is allocated, as a crafted shape such as [2^60, 0] holds no
        // bytes yet would ask for the memory of its count.
        if t.shape.len() == 2 && (row == 0 || count > crate::config::MAX_LBFGS_HISTORY) {
            return Err(bad(
                path,
                format!("tensor `{}` has an impossible shape {:?}", t.name, t.shape),
            ));
        }
        h.update(label(&t.name, &t.shape, 4 * total).as_bytes());
        file.seek(std::io::SeekFrom::Start(t.start))
            .map_err(|e| Error::io(path, e))?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let mut v = Vec::with_capacity(row);
            while v.len() < row {
                let take = (row - v.len()).min(BLOCK);
                let bytes = &mut buf[..4 * take];
                file.read_exact(bytes).map_err(|e| Error::io(path, e))?;
                h.update(&*bytes);
                v.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            values.push(v);
        }
        if t.shape.len() == 2 {
            rows.insert(t.name.clone(), values);
        } else {
            flat.insert(t.name.clone(), values.pop().unwrap_or_default());
        }
    }
    if meta.get("checksum") != Some(&hex(h)) {
        return Err(bad(
            path,
            "the file is damaged (its SHA-256 checksum does not match its contents)",
        ));
    }
    Ok((flat, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        let v = |k: f32| vec![k, k + 1.0, k + 2.0];
        Checkpoint {
            fingerprint: "f".into(),
            weights: "w".into(),
            stage: 2,
            done: 40,
            best: Some((
                LossParts {
                    total: 10.0,
                    content: 1.0,
                    style: 2.0,
                    tv: 3.0,
                    temporal: 4.0,
                },
                v(7.0),
            )),
            lbfgs: LbfgsState {
                x: v(0.0),
                grad: v(1.0),
                d: v(2.0),
                prev_grad: v(3.0),
                old_dirs: [v(4.0)].into(),
                old_stps: [v(5.0)].into(),
                ro: [0.5].into(),
                lr: 1.0,
                n_iter: 3,
                ..LbfgsState::default()
            },
        }
    }

    #[test]
    fn the_best_loss_keeps_every_term_and_the_stage_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        checkpoint().save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), checkpoint());
        let bytes = std::fs::read(&path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!(meta["stage"], "2");
        assert_eq!(
            meta["best_loss"],
            r#"{"total":10.0,"content":1.0,"style":2.0,"tv":3.0,"temporal":4.0}"#
        );
    }

    /// A checkpoint in the layout written before the stage key was renamed (`scale`) and
    /// the best loss moved to the metadata (a tensor of four terms).
    fn write_old_layout(c: &Checkpoint, path: &Path) {
        use sha2::Digest;
        let s = &c.lbfgs;
        let (parts, best_x) = c.best.clone().unwrap();
        let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let best_loss = [parts.total, parts.content, parts.style, parts.tv];
        let rows = |q: &VecDeque<Vec<f32>>| q.iter().flatten().copied().collect::<Vec<f32>>();
        let n = s.x.len();
        let tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = vec![
            ("best_loss", vec![4], f(&best_loss)),
            ("best_x", vec![n], f(&best_x)),
            ("d", vec![n], f(&s.d)),
            ("grad", vec![n], f(&s.grad)),
            ("old_dirs", vec![1, n], f(&rows(&s.old_dirs))),
            ("old_stps", vec![1, n], f(&rows(&s.old_stps))),
            ("prev_grad", vec![n], f(&s.prev_grad)),
            ("ro", vec![1], f(&[0.5])),
            ("scalars", vec![4], f(&[s.loss, s.t, s.h_diag, s.lr])),
            ("x", vec![n], f(&s.x)),
        ];
        let mut meta: HashMap<String, String> = [
            ("neural_style_checkpoint", VERSION),
            ("fingerprint", "f"),
            ("weights", "w"),
            ("scale", "2"),
            ("done", "40"),
            ("n_iter", "3"),
            ("fresh", "false"),
            ("above", "0"),
            ("recoveries", "0"),
            ("evaluations", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut h = checksum_start(&meta);
        for (name, shape, bytes) in &tensors {
            h.update(label(name, shape, bytes.len()).as_bytes());
            h.update(bytes);
        }
        meta.insert("checksum".into(), hex(h));
        let views = tensors.iter().map(|(name, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes);
            (name.to_string(), view.unwrap())
        });
        safetensors::serialize_to_file(views, &Some(meta), path).unwrap();
    }

    #[test]
    fn a_crafted_history_shape_is_refused_before_anything_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        for rows in [1usize << 60, 200_000_000] {
            let path = dir.path().join("crafted.ckpt");
            let meta = HashMap::from([("neural_style_checkpoint".to_string(), VERSION.into())]);
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, 0], &[])
                    .unwrap();
            safetensors::serialize_to_file([("old_dirs", view)], &Some(meta), &path).unwrap();
            let err = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(err.contains("impossible shape"), "{err}");
        }
    }

    #[test]
    fn a_checkpoint_in_the_old_layout_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.ckpt");
        write_old_layout(&checkpoint(), &path);
        let mut expected = checkpoint();
        // The old layout had no temporal term.
        if let Some((parts, _)) = &mut expected.best {
            parts.temporal = 0.0;
        }
        assert_eq!(Checkpoint::load(&path).unwrap(), expected);
    }
}
