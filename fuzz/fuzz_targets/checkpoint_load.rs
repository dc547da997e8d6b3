//! Any bytes given as a checkpoint file (`--resume`, or a worker taking a job over): the
//! safetensors header and the tensors named in it must load or be refused with an error,
//! never panic or allocate by a shape the file claims (issue 43, D6). A loaded checkpoint
//! is consistent: every image-sized vector has the point's length, and the history's
//! three queues are as long as each other.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.ckpt");
    std::fs::write(&path, data).expect("write");
    if let Ok(c) = neural_style::Checkpoint::load(&path) {
        let s = &c.lbfgs;
        let n = s.x.len();
        for v in [&s.grad, &s.d, &s.prev_grad] {
            assert!(v.is_empty() || v.len() == n);
        }
        assert_eq!(s.old_dirs.len(), s.old_stps.len());
        assert_eq!(s.old_dirs.len(), s.ro.len());
        assert!(s.old_dirs.iter().chain(&s.old_stps).all(|v| v.len() == n));
        if let Some((_, best)) = &c.best {
            assert_eq!(best.len(), n);
        }
        if let Some((_, point, grad)) = &s.best {
            assert_eq!((point.len(), grad.len()), (n, n));
        }
    }
});
