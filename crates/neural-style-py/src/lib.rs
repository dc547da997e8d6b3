//! `neural_style._native`: the Python package's bridge to the command ([`run_cli`], behind
//! the `neural-style` script) and to its default job ([`transfer`], behind
//! `neural_style.transfer`): flags in, images in memory both ways, events to a Python
//! callable, every error a `NeuralStyleError` carrying the command's one-line message.

use std::ffi::OsString;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use neural_style::{Event, Image, LossParts};
use neural_style_cli::embed::{self, Given, Request};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// mimalloc, as in the command: the engine allocates and frees tensors of tens of
/// megabytes at every step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(
    _native,
    NeuralStyleError,
    PyException,
    "A bad input or setting, or a failed run: the message is the command's."
);

/// Runs the `neural-style` command with `argv` (the program name first) and returns its
/// exit status.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| neural_style_cli::main_with_args(argv))
}

/// Tells a running [`transfer`] to stop at its next evaluation and return its best image.
#[pyclass(frozen)]
struct Stop(Arc<AtomicBool>);

#[pymethods]
impl Stop {
    #[new]
    fn new() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }

    /// Asks the run to stop.
    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `(bytes, width, height)`: an image as interleaved 8-bit RGB, what the command writes.
fn rgb8<'py>(py: Python<'py>, image: &Image) -> (Bound<'py, PyBytes>, u32, u32) {
    let rgb = image.to_rgb8();
    (PyBytes::new(py, rgb.as_raw()), image.width, image.height)
}

/// The loss terms as a dict, from the library's own serialisation of them (every term,
/// the temporal one too), as `--log` writes them.
fn losses<'py>(py: Python<'py>, loss: &LossParts) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let terms = serde_json::to_value(loss).map_err(|e| NeuralStyleError::new_err(e.to_string()))?;
    for (name, value) in terms.as_object().into_iter().flatten() {
        d.set_item(name, value.as_f64())?;
    }
    Ok(d)
}

/// An event as a dict whose `"event"` key names it.
fn event_dict<'py>(py: Python<'py>, event: &Event<'_>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let d = PyDict::new(py);
    match event {
        Event::Started {
            evaluations,
            width,
            height,
        } => {
            d.set_item("event", "started")?;
            d.set_item("evaluations", evaluations)?;
            d.set_item("width", width)?;
            d.set_item("height", height)?;
        }
        Event::Stage {
            index,
            stages,
            width,
            height,
            evaluations,
            tiles,
        } => {
            d.set_item("event", "stage")?;
            d.set_item("index", index)?;
            d.set_item("stages", stages)?;
            d.set_item("width", width)?;
            d.set_item("height", height)?;
            d.set_item("evaluations", evaluations)?;
            d.set_item("tiles", tiles)?;
        }
        Event::Tile {
            evaluation,
            done,
            of,
        } => {
            d.set_item("event", "tile")?;
            d.set_item("evaluation", evaluation)?;
            d.set_item("done", done)?;
            d.set_item("of", of)?;
        }
        Event::Evaluation {
            evaluation,
            loss,
            elapsed,
            ..
        } => {
            d.set_item("event", "evaluation")?;
            d.set_item("evaluation", evaluation)?;
            d.set_item("loss", losses(py, loss)?)?;
            d.set_item("seconds", elapsed.as_secs_f64())?;
        }
        Event::Snapshot { evaluation, image } => {
            d.set_item("event", "preview")?;
            d.set_item("evaluation", evaluation)?;
            d.set_item("image", rgb8(py, image))?;
        }
        _ => return Ok(None),
    }
    Ok(Some(d))
}

/// The images given in memory: name -> (planar RGB f32 bytes, width, height).
fn given_images(given: Vec<(String, Vec<u8>, u32, u32)>) -> PyResult<Given> {
    given
        .into_iter()
        .map(|(name, bytes, width, height)| {
            let plane = width as usize * height as usize;
            if bytes.len() != 3 * plane * 4 {
                return Err(NeuralStyleError::new_err(format!(
                    "{name}: {} bytes for a {width}x{height} image; planar RGB float32 needs {}",
                    bytes.len(),
                    3 * plane * 4
                )));
            }
            let data = bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((PathBuf::from(name), Image::new(width, height, data)))
        })
        .collect()
}

/// Runs the default job of `args` (the command's flags, without the program name), with
/// `given` images in memory under the names the flags use, a preview every
/// `preview_every` evaluations, `on_event` called with each event's dict on the run's
/// thread (returning `False` stops the run), until done or `stop` is set. Returns a dict with
/// the image (`(rgb8 bytes, width, height)`), the losses, the structure figure, what was
/// written and the command's notes.
#[pyfunction]
fn transfer<'py>(
    py: Python<'py>,
    args: Vec<OsString>,
    given: Vec<(String, Vec<u8>, u32, u32)>,
    preview_every: usize,
    stop: &Bound<'py, Stop>,
    on_event: Py<PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let given = given_images(given)?;
    let flag = stop.get().0.clone();
    let failure: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let hook_failure = failure.clone();
    let hook = Box::new(move |event: &Event<'_>| {
        let sent = Python::attach(|py| -> PyResult<bool> {
            match event_dict(py, event)? {
                Some(d) => {
                    let verdict = on_event.call1(py, (d,))?;
                    Ok(!matches!(verdict.extract::<bool>(py), Ok(false)))
                }
                None => Ok(true),
            }
        });
        match sent {
            Ok(true) => ControlFlow::Continue(()),
            Ok(false) => ControlFlow::Break(()),
            Err(e) => {
                hook_failure.lock().expect("one writer").get_or_insert(e);
                ControlFlow::Break(())
            }
        }
    });
    let request = Request {
        args,
        given,
        preview_every,
    };
    let finished = py
        .detach(|| embed::run(request, flag, hook))
        .map_err(|e| NeuralStyleError::new_err(format!("{e:#}")))?;
    if let Some(e) = failure.lock().expect("one writer").take() {
        return Err(e);
    }
    let out = &finished.output;
    let d = PyDict::new(py);
    d.set_item("image", rgb8(py, &out.image))?;
    d.set_item("evaluations", out.evaluations)?;
    d.set_item("best_loss", losses(py, &out.best_loss)?)?;
    d.set_item("final_loss", losses(py, &out.final_loss)?)?;
    d.set_item("structure", out.structure)?;
    d.set_item("stopped", out.stopped)?;
    d.set_item("interrupted", finished.interrupted)?;
    d.set_item("written", finished.written)?;
    d.set_item("notes", finished.notes)?;
    d.set_item("description", finished.description)?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(transfer, m)?)?;
    m.add_class::<Stop>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("NeuralStyleError", m.py().get_type::<NeuralStyleError>())?;
    Ok(())
}
