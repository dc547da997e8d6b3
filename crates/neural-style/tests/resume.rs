//! Checkpoints: a run stopped mid-way and resumed from its last checkpoint (through a file)
//! makes the same evaluations as a run that was never stopped, at every size of the
//! coarse-to-fine schedule.

mod common;

use std::ops::ControlFlow;

use neural_style::{
    Checkpoint, Event, Image, Inputs, Network, Plan, Size, TransferConfig, default_device, run,
};

fn image(w: u32, h: u32, phase: f32) -> Image {
    let n = (w * h) as usize;
    let data = (0..3 * n)
        .map(|i| (((i % n) as f32 * 0.37 + phase + (i / n) as f32).sin() + 1.0) * 0.4 + 0.1)
        .collect();
    Image::new(w, h, data)
}

/// Runs with a checkpoint every iteration; stops at evaluation `stop_at` (if any) or after
/// `resume`. Returns (evaluation, total loss) pairs and the checkpoints seen.
fn go(
    net: &Network,
    config: &TransferConfig,
    inputs: &Inputs,
    stop_at: Option<usize>,
    resume: Option<(Checkpoint, &std::path::Path)>,
) -> (Vec<(usize, f32)>, Vec<Checkpoint>) {
    let mut losses = Vec::new();
    let mut checkpoints = Vec::new();
    let mut observer = |e: &Event<'_>| {
        match e {
            Event::Evaluation {
                evaluation, loss, ..
            } => {
                losses.push((*evaluation, loss.total));
                if Some(*evaluation) == stop_at {
                    return ControlFlow::Break(());
                }
            }
            Event::Checkpoint { checkpoint } => checkpoints.push((*checkpoint).clone()),
            _ => {}
        }
        ControlFlow::Continue(())
    };
    let checked = config.clone().check(inputs.styles.len()).expect("config");
    let plan = Plan::new(&checked, net, inputs.clone())
        .and_then(|p| p.with_checkpoints(1, resume))
        .expect("plan");
    run(net, &plan, &mut observer).expect("run");
    (losses, checkpoints)
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    // 40x32 from 20 px: sizes 20, 28 and 40 (12, 6 and 3 evaluations).
    let config = TransferConfig {
        iterations: 12,
        size: Size::Exact(40, 32),
        min_size: 20,
        ..TransferConfig::default()
    };
    let net = Network::load(&common::tiny_weights(), &config, &default_device()).expect("weights");
    let inputs = Inputs {
        content: Some(image(40, 32, 0.0)),
        styles: vec![image(30, 30, 1.0)],
        ..Inputs::default()
    };
    let (full, _) = go(&net, &config, &inputs, None, None);
    assert_eq!(full.len(), 21);
    let dir = tempfile::tempdir().unwrap();
    for stop in [7, 15] {
        let (partial, checkpoints) = go(&net, &config, &inputs, Some(stop), None);
        assert_eq!(partial.len(), stop);
        let last = checkpoints.last().expect("a checkpoint").clone();
        let path = dir.path().join(format!("run-{stop}.ckpt"));
        last.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, last, "the file holds the whole state");
        let resumed_from = loaded.done + loaded.lbfgs.evaluations;
        assert!(resumed_from < stop);
        let (rest, _) = go(&net, &config, &inputs, None, Some((loaded, &path)));
        // Evaluation numbers continue, and every loss matches the uninterrupted run.
        assert_eq!(rest.first().map(|r| r.0), Some(resumed_from + 1));
        assert_eq!(rest.last().map(|r| r.0), Some(21));
        for (e, loss) in &rest {
            let expected = full[e - 1].1;
            assert!(
                (loss - expected).abs() <= 1e-5 * expected.abs().max(1e-6),
                "evaluation {e}: {loss} vs {expected} (stopped at {stop})"
            );
        }
    }
    // A checkpoint of another run is refused.
    let (_, checkpoints) = go(&net, &config, &inputs, Some(5), None);
    let other = TransferConfig {
        style_weight: Some(3.0),
        ..config.clone()
    };
    let path = dir.path().join("other.ckpt");
    let checked = other.check(inputs.styles.len()).expect("config");
    let err = Plan::new(&checked, &net, inputs.clone())
        .and_then(|p| p.with_checkpoints(0, Some((checkpoints[0].clone(), &path))))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other.ckpt") && err.contains("other settings"),
        "{err}"
    );
}

/// Six evaluations of a 24x20 picture on the tiny weights: its settings, images and network.
fn small_run() -> (TransferConfig, Inputs, Network) {
    let config = TransferConfig {
        iterations: 6,
        size: Size::Exact(24, 20),
        ..TransferConfig::default()
    };
    let inputs = Inputs {
        content: Some(image(24, 20, 0.0)),
        styles: vec![image(20, 20, 1.0)],
        ..Inputs::default()
    };
    let net = Network::load(&common::tiny_weights(), &config, &default_device()).unwrap();
    (config, inputs, net)
}

#[test]
fn a_checkpoint_of_other_weights_or_with_a_flipped_byte_is_refused() {
    let (config, inputs, net) = small_run();
    let (_, checkpoints) = go(&net, &config, &inputs, Some(3), None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    checkpoints[0].save(&path).unwrap();

    // The same weights with one value nudged (the first byte of the tensor data).
    let mut bytes = std::fs::read(common::tiny_weights()).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header] ^= 1;
    let nudged = dir.path().join("nudged.safetensors");
    std::fs::write(&nudged, &bytes).unwrap();
    let other = Network::load(&nudged, &config, &default_device()).unwrap();
    assert_ne!(other.identity, net.identity);
    let checked = config.clone().check(1).unwrap();
    let resume = || Some((Checkpoint::load(&path).unwrap(), path.as_path()));
    let err = Plan::new(&checked, &other, inputs.clone())
        .and_then(|p| p.with_checkpoints(1, resume()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run.ckpt") && err.contains("other weights"),
        "{err}"
    );
    assert!(
        Plan::new(&checked, &net, inputs)
            .and_then(|p| p.with_checkpoints(1, resume()))
            .is_ok()
    );

    // One flipped bit anywhere in the tensor data: the checksum no longer matches.
    let mut ckpt = std::fs::read(&path).unwrap();
    let at = ckpt.len() - 40;
    ckpt[at] ^= 0x10;
    std::fs::write(&path, &ckpt).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("run.ckpt") && err.contains("damaged"), "{err}");
    // Cut short (a disk that filled up): refused with the reason, not a panic.
    ckpt[at] ^= 0x10;
    std::fs::write(&path, &ckpt[..ckpt.len() / 2]).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("run.ckpt") && err.contains("not a checkpoint file (tensor"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_is_a_safetensors_file_and_reads_back_equal() {
    let (config, inputs, net) = small_run();
    let (losses, checkpoints) = go(&net, &config, &inputs, None, None);
    // Showing the state (moved out for the event and back) leaves the run as it was.
    let mut plain = Vec::new();
    let mut observer = |e: &Event<'_>| {
        if let Event::Evaluation {
            evaluation, loss, ..
        } = e
        {
            plain.push((*evaluation, loss.total));
        }
        ControlFlow::Continue(())
    };
    common::transfer(&net, &config, &inputs, &mut observer).unwrap();
    assert_eq!(losses, plain);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    // The last checkpoint holds several history pairs, written row by row.
    let last = checkpoints.last().unwrap();
    let pairs = last.lbfgs.old_dirs.len();
    assert!(pairs >= 2, "{pairs} pairs");
    last.save(&path).unwrap();
    assert_eq!(&Checkpoint::load(&path).unwrap(), last);
    // Other tools read it: the safetensors crate finds every tensor with its shape.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dirs = st.tensor("old_dirs").unwrap();
    assert_eq!(dirs.shape(), [pairs, 3 * 24 * 20]);
    let first: Vec<f32> = dirs.data()[..8]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(first, last.lbfgs.old_dirs[0][..2]);
}
