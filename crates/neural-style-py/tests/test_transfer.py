"""The Python package against the command: the same run gives byte-identical files, images
in memory give what their files give, bad input raises NeuralStyleError with the command's
message, and callbacks, previews and Ctrl-C behave as documented.

Run by tools/python_check.sh in a fresh virtual environment after `pip install .`; the
inputs are drawn here and the network is the committed tiny VGG19 (fixtures/)."""

import os
import signal
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
from PIL import Image

import neural_style

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WEIGHTS = os.path.join(ROOT, "crates", "neural-style-testdata", "fixtures", "tiny_vgg19.safetensors")
# The installed command: the same program, reached through the package's script.
COMMAND = os.path.join(sysconfig.get_path("scripts"), "neural-style")
SMALL = dict(weights=WEIGHTS, size=64, iterations=8, progress=None)


def command_flags(**settings):
    return ["-w", WEIGHTS, "--size", "64", "-n", "8", "-q"] + [
        w for k, v in settings.items() for w in ("--" + k.replace("_", "-"), str(v))]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A drawn photo (a sun over hills) and painting (coloured stripes), as files and arrays."""
    d = tmp_path_factory.mktemp("pair")
    y, x = np.mgrid[0:48, 0:64]
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[..., 2] = 255 - 3 * y
    photo[(x - 44) ** 2 + (y - 12) ** 2 < 60] = (250, 220, 40)
    photo[y > 30 + 4 * np.sin(x / 6)] = (40, 140, 60)
    painting = np.stack([(x * 37 + y * 11) % 256, (x * 5 + y * 29) % 256,
                         (x * 13 - y * 7) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(d / "photo.png")
    Image.fromarray(painting).save(d / "painting.png")
    return d, photo, painting


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal or a Jupyter kernel, even where this
    process was started with SIGINT ignored (a background job of a script, as CI may be)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def run_command(*args):
    return subprocess.run([COMMAND, *args], capture_output=True, text=True)


def command_error(*args):
    """The one-line message the command prints for a run it refuses."""
    r = run_command(*args)
    assert r.returncode == 2, r.stderr
    return r.stderr.strip().removeprefix("error: ")


def test_python_and_the_command_write_byte_identical_files(pair, tmp_path):
    d, _, _ = pair
    cli, py = tmp_path / "cli.png", tmp_path / "py.png"
    r = run_command("-c", str(d / "photo.png"), "-s", str(d / "painting.png"), "-o", str(cli),
                    *command_flags(style_weight=50))
    assert r.returncode == 0, r.stderr
    image = neural_style.transfer(d / "photo.png", d / "painting.png", output=py,
                                  style_weight=50, **SMALL)
    assert cli.read_bytes() == py.read_bytes()
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(cli)))
    assert image.info["written"] == py and image.info["evaluations"] == 8


def test_arrays_and_pil_images_give_what_their_files_give(pair):
    d, photo, painting = pair
    from_files = np.asarray(neural_style.transfer(str(d / "photo.png"), str(d / "painting.png"), **SMALL))
    from_arrays = np.asarray(neural_style.transfer(photo, painting, **SMALL))
    from_pil = np.asarray(neural_style.transfer(Image.fromarray(photo), [Image.fromarray(painting)], **SMALL))
    assert np.array_equal(from_files, from_arrays)
    assert np.array_equal(from_files, from_pil)
    assert from_files.shape == (48, 64, 3) and from_files.dtype == np.uint8


def test_float_grey_and_rgba_arrays_are_images(pair):
    _, photo, painting = pair
    grey = photo.mean(axis=2) / 255.0
    rgba = np.dstack([painting, np.full(painting.shape[:2], 255, np.uint8)])
    image = neural_style.transfer(grey, rgba, **SMALL)
    assert image.size == (64, 48)


def test_a_missing_file_gives_the_commands_message(pair, tmp_path):
    d, _, _ = pair
    missing = tmp_path / "nope.jpg"
    expected = command_error("-c", str(missing), "-s", str(d / "painting.png"), "-o",
                             str(tmp_path / "o.png"), *command_flags())
    with pytest.raises(neural_style.NeuralStyleError) as e:
        neural_style.transfer(missing, d / "painting.png", **SMALL)
    assert str(e.value) == expected
    assert str(missing) in expected


def test_a_bad_setting_gives_the_commands_message(pair, tmp_path):
    d, _, _ = pair
    expected = command_error("-c", str(d / "photo.png"), "-o", str(tmp_path / "o.png"),
                             *command_flags(style_weight=-1))
    with pytest.raises(neural_style.NeuralStyleError, match="^--style-weight: -1 is not allowed") as e:
        neural_style.transfer(d / "photo.png", style_weight=-1, **SMALL)
    assert str(e.value) == expected


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 48, 64), np.uint8), r"^content: a NumPy array of shape \(3, 48, 64\) is not an image.*channels first"),
    (np.zeros((48, 64, 3), np.int64), r"^content: a NumPy array of dtype int64 is not an image"),
    (np.full((48, 64, 3), 255.0), r"^content: a float array must hold values in 0\.\.1, this one spans 255\.\.255"),
    (np.zeros((0, 64, 3), np.uint8), r"^content: the image array of shape \(0, 64, 3\) is empty"),
])
def test_an_array_that_is_not_an_image_is_refused(pair, array, message):
    _, _, painting = pair
    with pytest.raises(neural_style.NeuralStyleError, match=message):
        neural_style.transfer(array, painting, **SMALL)


def test_an_empty_style_list_is_refused(pair):
    _, photo, _ = pair
    with pytest.raises(neural_style.NeuralStyleError, match=r"^style: the list of images is empty"):
        neural_style.transfer(photo, [], **SMALL)


def test_an_unknown_setting_is_refused_before_any_work(pair):
    _, photo, painting = pair
    with pytest.raises(neural_style.NeuralStyleError, match=r"^styel_weight: no such setting"):
        neural_style.transfer(photo, painting, styel_weight=3, **SMALL)


def test_the_callback_sees_every_evaluation_and_can_stop_the_run(pair):
    _, photo, painting = pair
    seen = []

    terms = []

    def callback(event):
        seen.append(event["event"])
        if event["event"] == "evaluation":
            terms.append(sorted(event["loss"]))
        return not (event["event"] == "evaluation" and event["evaluation"] == 3)

    image = neural_style.transfer(photo, painting, callback=callback, **SMALL)
    assert seen[0] == "started" and seen.count("evaluation") == 3
    # Every loss term, as --log writes them, the temporal one included.
    assert terms[0] == ["content", "style", "temporal", "total", "tv"]
    assert sorted(image.info["best_loss"]) == terms[0]
    assert image.info["stopped"] and not image.info["interrupted"]
    assert image.info["evaluations"] == 3


def test_previews_are_pil_images_of_the_output_size(pair):
    _, photo, painting = pair
    previews = []
    neural_style.transfer(photo, painting, preview_every=3, callback=lambda e: previews.append(e)
                          if e["event"] == "preview" else None, **SMALL)
    # None at the last evaluation: the result is the final image.
    assert [p["evaluation"] for p in previews] == [3, 6]
    assert all(p["image"].size == (64, 48) for p in previews)


def test_ctrl_c_stops_the_run_and_returns_the_best_image(pair, tmp_path, ctrl_c):
    d, photo, painting = pair
    out = tmp_path / "out.png"

    def interrupt_at_3(event):
        if event["event"] == "evaluation" and event["evaluation"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    image = neural_style.transfer(photo, painting, output=out, callback=interrupt_at_3, **SMALL)
    assert image.info["interrupted"] and image.info["evaluations"] < 8
    assert image.info["written"] == tmp_path / "out.partial.png"
    assert not out.exists() and (tmp_path / "out.partial.png").exists()


def test_the_installed_command_is_the_rust_program():
    r = run_command("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"neural-style {neural_style.__version__}"
    r = run_command("--content")
    assert r.returncode == 2 and "a value is required for '--content <PATH>'" in r.stderr


def test_bad_input_never_crashes_the_interpreter(pair):
    """Every refusal above in a child interpreter, which must end normally."""
    code = ("import numpy as np, neural_style\n"
            "for bad in [np.zeros((2,2,2)), np.zeros((4,4,3), np.complex64), 'missing.png', None]:\n"
            "    try: neural_style.transfer(bad, [], progress=None)\n"
            "    except neural_style.NeuralStyleError as e: print('refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("refused:") == 4


def test_every_flag_of_the_command_is_a_keyword_argument():
    """FLAG_ARGUMENTS against `neural-style --help`, so a new flag cannot be left out."""
    import re
    r = run_command("--help")
    flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)", r.stdout, re.M))
    negated = {"no-safeguard": "safeguard", "no-coarse-to-fine": "coarse_to_fine", "no-tile": "tile",
               "no-memory-check": "memory_check"}
    own = {"content", "style", "output", "init", "mask", "content_mask"}  # transfer's parameters
    terminal = {"quiet", "print_every", "help", "version"}
    names = {negated.get(f, f.replace("-", "_")) for f in flags}
    assert names - own - terminal == set(neural_style.FLAG_ARGUMENTS)


def test_former_names_of_settings_are_still_taken():
    flag = neural_style._flag
    assert flag("multiscale", False) == flag("coarse_to_fine", False) == ["--no-coarse-to-fine"]
    assert flag("scales", [200, 300]) == flag("stage_sides", [200, 300])
    assert flag("stage_sides", [200, 300]) == ["--stage-sides", "200,300"]


def test_each_run_may_ask_for_its_own_thread_count(pair):
    """`threads` sizes a pool for that run; the process-wide pool cannot be resized."""
    _, photo, painting = pair
    one = neural_style.transfer(photo, painting, threads=1, **SMALL)
    two = neural_style.transfer(photo, painting, threads=2, **SMALL)
    assert one.info["evaluations"] == two.info["evaluations"] == 8
    with pytest.raises(neural_style.NeuralStyleError, match=r"^--threads: 0 is not allowed"):
        neural_style.transfer(photo, painting, threads=0, **SMALL)


def test_a_failing_callback_stops_the_run_and_raises_its_error(pair):
    import threading
    _, photo, painting = pair

    def broken(event):
        if event["event"] == "evaluation":
            raise ValueError("the callback broke")

    with pytest.raises(ValueError, match="the callback broke"):
        neural_style.transfer(photo, painting, callback=broken, **SMALL)
    assert not [t for t in threading.enumerate() if t.name == "neural-style"]


def test_a_second_ctrl_c_raises_at_once_and_the_run_ends_by_itself(pair, monkeypatch, ctrl_c):
    """Driven by a stand-in for the engine whose evaluation takes 2 s, so that both Ctrl-Cs
    arrive while the caller waits for it."""
    import threading
    import time
    _, photo, painting = pair
    verdicts = []

    def slow_engine(args, given, preview_every, stop, relay):
        relay({"event": "started", "evaluations": 8, "width": 64, "height": 48})
        time.sleep(2.0)
        verdicts.append(relay({"event": "evaluation", "evaluation": 1,
                               "loss": {"total": 1.0}, "seconds": 2.0}))

    def interrupt_twice():
        for _ in range(2):
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(neural_style._native, "transfer", slow_engine)
    start = time.monotonic()
    threading.Thread(target=interrupt_twice).start()
    with pytest.raises(KeyboardInterrupt):
        neural_style.transfer(photo, painting, **SMALL)
    assert time.monotonic() - start < 1.5, "the second Ctrl-C must not wait for the run"
    deadline = time.monotonic() + 10
    while [t for t in threading.enumerate() if t.name == "neural-style"]:
        assert time.monotonic() < deadline, "the run's thread did not end"
        time.sleep(0.05)
    assert verdicts == [False], "the stop must reach the engine"
