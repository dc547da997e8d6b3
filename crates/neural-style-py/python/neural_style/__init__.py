"""Neural style transfer (Gatys, Ecker, Bethge 2015, "A Neural Algorithm of Artistic Style")
from Python: `transfer(content, style)` paints a photo in the style of a painting and
returns a PIL image. It runs the `neural-style` command's own job (the same defaults,
checks, messages and results; a run from Python and one from the command line with the
same settings write byte-identical images), with images given as paths, PIL images or
NumPy arrays, progress and a live preview in Jupyter, and Ctrl-C (a notebook's interrupt)
stopping the run with its best image.

    import neural_style
    painting = neural_style.transfer("photo.jpg", "starry_night.jpg", size=512)
    painting.save("out.png")
"""

import os
import queue
import threading

from . import _native
from ._display import Display
from ._inputs import InputError, image_arg

NeuralStyleError = _native.NeuralStyleError
__version__ = _native.__version__

__all__ = ["transfer", "NeuralStyleError", "FLAG_ARGUMENTS", "__version__"]

# Keyword arguments that switch something off with a `--no-...` flag when given False.
_NEGATED = {
    "coarse_to_fine": "--no-coarse-to-fine",
    "safeguard": "--no-safeguard",
    "tile": "--no-tile",
    "memory_check": "--no-memory-check",
}

# The command's flags that take a value, by keyword argument (every one but the images, the
# output and the terminal-only ones: --quiet, --print-every).
FLAG_ARGUMENTS = (
    "weights", "model", "cache_dir", "arch", "preprocess", "device", "threads",
    "max_input_pixels", "accept_damaged", "content_layers", "style_layers",
    "style_layer_weights", "content_weight", "style_weight", "tv_weight", "loss_form",
    "optimizer", "iterations", "lbfgs_history", "line_search", "safeguard", "learning_rate",
    "seed", "pooling", "padding", "convolution", "precision", "size", "coarse_to_fine",
    "min_size", "stage_sides", "tile", "bit_depth", "dpi", "preserve_colors", "style_scale", "style_blend", "style_loss",
    "save_every", "checkpoint", "checkpoint_every", "resume", "log", "max_memory",
    "memory_check",
)

# Former names of keyword arguments, still taken.
_FORMER_NAMES = {"multiscale": "coarse_to_fine", "scales": "stage_sides"}

# Evaluations between previews in a notebook unless `preview_every` says otherwise.
_NOTEBOOK_PREVIEW_EVERY = 10


def _flag(name, value):
    """The command-line words for keyword argument `name`."""
    name = _FORMER_NAMES.get(name, name)
    if name not in FLAG_ARGUMENTS:
        raise InputError(
            f"{name}: no such setting; the settings are the command's flags "
            f"(see neural_style.FLAG_ARGUMENTS)"
        )
    flag = "--" + name.replace("_", "-")
    if value is True:
        if name in _NEGATED:
            return []
        return [flag]
    if value is False:
        if name in _NEGATED:
            return [_NEGATED[name]]
        return []
    if name == "tile" and value is not None:
        return [flag, str(value)]
    if isinstance(value, (list, tuple)):
        return [flag, ",".join(str(v) for v in value)]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return [flag, str(value)]


def _images(arg, value, given):
    """The paths or in-memory names of `value`: one image or a list of them."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise InputError(
                f"{arg}: the list of images is empty; give at least one image "
                f"(or leave {arg} out)"
            )
        return [image_arg(f"{arg}[{i}]", v, given) for i, v in enumerate(value)]
    return [image_arg(arg, value, given)]


def command_line(content=None, style=None, *, output=None, init=None, mask=None,
                 content_mask=None, **settings):
    """The command's flags for these arguments, and the images they give in memory."""
    given = []
    args = []
    for flag, arg, value in (("--content", "content", content), ("--style", "style", style),
                             ("--mask", "mask", mask)):
        for name in _images(arg, value, given):
            args += [flag, name]
    if content_mask is not None:
        args += ["--content-mask", image_arg("content_mask", content_mask, given)]
    if init is not None:
        keyword = isinstance(init, str) and init in ("content", "noise")
        args += ["--init", init if keyword else image_arg("init", init, given)]
    if output is not None:
        args += ["--output", os.fspath(output)]
    for name, value in settings.items():
        if value is not None:
            args += _flag(name, value)
    return args, given


def transfer(content=None, style=None, *, output=None, size=None, iterations=None,
             content_weight=None, style_weight=None, tv_weight=None, weights=None, model=None,
             init=None, seed=None, progress="auto", preview="auto", preview_every=None,
             callback=None, **settings):
    """Paints `content` in the style of `style` and returns the result as a PIL image.

    content, style: a path, a PIL image or a NumPy array (height x width x 3 or 4, or
        height x width; uint8, uint16 or float in 0..1); `style` may be a list of them.
        Leave out `style` to reconstruct the photo, `content` to synthesise a texture.
    output: also write the result there, as the command does (format from the extension;
        an interrupted run writes OUT.partial.EXT instead).
    size, iterations, content_weight, style_weight, tv_weight, weights, model, init, seed,
        and any other flag of the command as a keyword (`style_scale=0.5`,
        `preserve_colors="luminance"`, `coarse_to_fine=False`, `threads=2`, `log="run.jsonl"`...;
        the list is `neural_style.FLAG_ARGUMENTS`): as `neural-style --help` documents them.
        `weights` is a .pth or .safetensors file; without it, `model` (default vgg19) is
        downloaded once and cached.
    progress: "auto" (a bar: tqdm's widget in Jupyter, its text bar elsewhere, plain lines
        without tqdm), "text" (plain lines) or None.
    preview: in Jupyter, show the painting as it emerges, every `preview_every` evaluations
        (default 10).
    callback: called with each event, a dict whose "event" is "started", "stage",
        "evaluation" (with "loss" and "seconds"), "tile" or "preview" (with a PIL "image");
        returning False stops the run, which then returns its best image.

    The returned image's `info` holds the run's figures: "evaluations", "loss" (the final
    loss terms), "best_loss", "structure" (how much of the photo's layout is kept, 1 = all),
    "interrupted" (stopped by Ctrl-C), "stopped", "written" and "notes".

    Raises NeuralStyleError, with the command's message, for a bad input or setting
    (before any work) or a failed run. Ctrl-C stops the run at its next evaluation and
    returns the best image so far; a second Ctrl-C raises KeyboardInterrupt at once.
    """
    from PIL import Image

    try:
        args, given = command_line(
            content, style, output=output, init=init, size=size, iterations=iterations,
            content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
            weights=weights, model=model, seed=seed, **settings)
    except InputError as e:
        raise NeuralStyleError(str(e)) from None
    display = Display(progress, preview)
    if preview_every is None:
        preview_every = _NOTEBOOK_PREVIEW_EVERY if display.preview else 0

    def pil(rgb):
        data, width, height = rgb
        return Image.frombytes("RGB", (width, height), data)

    stop = _native.Stop()
    # The run works on a thread of its own; its events come here, to the caller's thread,
    # which draws them, calls `callback` and can take Ctrl-C. The run waits for each verdict,
    # so a callback's False stops it at that very event.
    events = queue.Queue()
    outcome = {}

    def relay(event):
        # Once stopped, the caller may be gone (a second Ctrl-C, a failing callback): the
        # run's thread then ends without waiting for anyone.
        if stop.is_set():
            return False
        verdict = queue.Queue(maxsize=1)
        events.put((event, verdict))
        while True:
            try:
                return verdict.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return False

    def work():
        try:
            outcome["result"] = _native.transfer(args, given, preview_every, stop, relay)
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e
        finally:
            events.put(None)

    def answer(verdict, go_on):
        try:
            verdict.put_nowait(go_on)
        except queue.Full:
            pass

    worker = threading.Thread(target=work, name="neural-style", daemon=True)
    worker.start()
    interrupted = False
    verdict = None
    try:
        while True:
            try:
                item = events.get(timeout=0.25)
                if item is None:
                    break
                event, verdict = item
                if event["event"] == "preview":
                    event["image"] = pil(event["image"])
                display.on_event(event)
                if callback is not None and callback(event) is False:
                    stop.set()
                answer(verdict, not stop.is_set())
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                stop.set()
                if verdict is not None:
                    answer(verdict, False)
    except BaseException as e:
        # A second Ctrl-C, or the callback or the display failed: stop the run and let the
        # exception through; after a failure, once the run has ended (at its next event),
        # after a second Ctrl-C at once.
        stop.set()
        if verdict is not None:
            answer(verdict, False)
        if not isinstance(e, KeyboardInterrupt):
            worker.join()
        raise
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    image = pil(result["image"])
    image.info.update({
        "evaluations": result["evaluations"], "loss": result["final_loss"],
        "best_loss": result["best_loss"], "structure": result["structure"],
        "interrupted": interrupted, "stopped": result["stopped"],
        "written": result["written"], "notes": result["notes"],
    })
    lines = list(result["notes"])
    if interrupted:
        lines.append(f"interrupted after {result['evaluations']} evaluations; returning the "
                     "best image so far")
    display.finish(image, lines)
    return image
