"""Images given to `transfer` as paths, PIL images or NumPy arrays, checked and turned into
what the command reads: a path stays a path (the command loads it, with its colour profile
and resolution); an image in memory becomes planar RGB float32 in 0..1 (alpha composited
over white, grey replicated), under a name that stands for it in the flags and in errors.
"""

import os

import numpy as np

# The dtypes an array image may have, and the value that stands for full intensity.
_INTEGER_FULL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class InputError(ValueError):
    """An image argument that is not an image: raised as NeuralStyleError by `transfer`."""


def _describe(value):
    if isinstance(value, np.ndarray):
        return "NumPy array"
    return "PIL image"


def _pil_array(image):
    """A PIL image as an array the checks below accept."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    has_alpha = mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))


def _planes(arg, array):
    """`array` (H x W, H x W x 1/3/4) as planar RGB float32 in 0..1: the command's `Image`."""
    if array.dtype in _INTEGER_FULL:
        values = array.astype(np.float32) / np.float32(_INTEGER_FULL[array.dtype])
    elif array.dtype.kind == "f":
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise InputError(f"{arg}: the {array.dtype} array holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{arg}: a float array must hold values in 0..1, this one spans "
                f"{low:g}..{high:g} (divide 0..255 values by 255)"
            )
    else:
        raise InputError(
            f"{arg}: a NumPy array of dtype {array.dtype} is not an image; give uint8 "
            "(0..255), uint16 (0..65535) or float (0..1)"
        )
    if values.ndim == 2:
        values = values[:, :, None]
    channels = values.shape[2]
    if channels == 1:
        rgb = np.repeat(values, 3, axis=2)
    elif channels == 3:
        rgb = values
    else:
        alpha = values[:, :, 3:4]
        rgb = np.clip(values[:, :, :3] * alpha + (np.float32(1.0) - alpha), 0.0, 1.0)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)


def _check_shape(arg, array):
    shape = tuple(array.shape)
    image_like = array.ndim == 2 or (array.ndim == 3 and shape[2] in (1, 3, 4))
    if not image_like:
        hint = ""
        if array.ndim == 3 and shape[0] in (1, 3, 4):
            hint = " (channels first? use array.transpose(1, 2, 0))"
        raise InputError(
            f"{arg}: a NumPy array of shape {shape} is not an image; give height x width x 3 "
            f"(RGB), x 4 (RGBA) or height x width (grey){hint}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{arg}: the image array of shape {shape} is empty")


def image_arg(arg, value, given):
    """The flag value for the image argument `arg`: a path as given, or the name under which
    the in-memory image is appended to `given` as (name, planar bytes, width, height)."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if path == "":
            raise InputError(f"{arg}: the path is empty; give an image file")
        return path
    if isinstance(value, np.ndarray):
        array = value
    elif hasattr(value, "mode") and hasattr(value, "convert") and hasattr(value, "size"):
        array = _pil_array(value)
    else:
        raise InputError(
            f"{arg}: {type(value).__name__} is not an image; give a path, a PIL image or a "
            "NumPy array"
        )
    _check_shape(arg, array)
    planes = _planes(arg, array)
    height, width = planes.shape[1], planes.shape[2]
    # The name stands for the image in the flags and in the command's messages.
    name = f"<{arg}: {_describe(value)} {width}x{height}>"
    given.append((name, planes.tobytes(), width, height))
    return name
