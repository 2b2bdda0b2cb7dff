"""The one check of uint8 NHWC image batches, shared by every entry point.

A program's input is a batch of unsigned pixel codes `[N, H, W, C]`
(`docs/bytecode.md`). `check_images` is the single rule the emulator, the
numpy reference, the command line and the dataset helpers apply: shape, then
dtype, then values, with errors that name what was expected, what was
received and how to fix it. It needs only numpy (no TensorFlow).

Example:

>>> import numpy as np
>>> check_images(np.array([[[[0.0], [255.0]]]]), (1, 2, 1)).dtype
dtype('uint8')
>>> check_images(np.full((1, 1, 2, 1), 0.5), (1, 2, 1))
Traceback (most recent call last):
...
ValueError: Expected uint8 pixel codes (whole numbers in [0, 255]). Received dtype float64 with \
values in [0.5, 0.5] that are not all whole numbers in range. Convert with \
np.clip(np.round(x), 0, 255).astype(np.uint8).
"""

import numpy as np

__all__ = ["check_images", "shape_error"]


def _fix(top):
    return f"Convert with np.clip(np.round(x), 0, {top}).astype(np.uint8)."


def shape_error(shape, input_shape=None, what="images", where=""):
    """Returns the `ValueError` for a batch of the wrong shape.

    Args:
        shape: The shape received (a tuple or list; `None` for unknown sizes).
        input_shape: `(H, W, C)` expected, or `None` for any 4-D batch.
        what: What the batch is called. Defaults to `"images"`.
        where: Prefix of the message. Defaults to `""`.

    Returns:
        A `ValueError` naming the expected and received shapes and the fix.

    Example:

    >>> print(shape_error((8, 8, 1), (8, 8, 1)))
    Expected images of shape (N, 8, 8, 1) (NHWC, uint8). Received: shape (8, 8, 1). Add a \
batch axis with x[None].
    """
    shape = tuple(shape)
    if input_shape is None:
        expected = "(N, height, width, channels)"
        hint = (" Add a channel axis with x[..., None] (grey images) or a batch axis with "
                "x[None] (one image).") if len(shape) == 3 else ""
    else:
        expected = f"(N, {', '.join(map(str, input_shape))})"
        if len(shape) == 3 and shape == tuple(input_shape):
            hint = " Add a batch axis with x[None]."
        else:
            hint = f" Resize the images to the program's input {'x'.join(map(str, input_shape))}."
    return ValueError(f"{where}Expected {what} of shape {expected} (NHWC, uint8). Received: "
                      f"shape {shape}.{hint}")


def check_images(images, input_shape=None, input_bits=8, allow_single=False, convert=True,
                 what="images", where=""):
    """Checks a batch of pixel codes and returns it as a uint8 numpy array.

    Args:
        images: Array-like `[N, H, W, C]`.
        input_shape: `(H, W, C)` the batch must have, or `None` for any 4-D
            batch. Defaults to `None`.
        input_bits: Bits of the codes: values must lie in
            `[0, 2**input_bits - 1]`. Defaults to `8`.
        allow_single: Accept one image `(H, W, C)` and add the batch axis.
            Defaults to `False`.
        convert: Accept integer or float arrays holding whole numbers in
            range and convert them; with `False` only uint8 is accepted.
            Defaults to `True`.
        what: What the batch is called in errors. Defaults to `"images"`.
        where: Prefix of error messages (e.g. the calling function's name).
            Defaults to `""`.

    Returns:
        A uint8 `numpy.ndarray` `[N, H, W, C]` (the input itself when it is
        already a uint8 array of 8-bit codes).

    Raises:
        ValueError: For a wrong rank or shape, a non-numeric dtype, or
            values that are not whole numbers in range.

    Example:

    >>> check_images(np.zeros((4, 4, 1), np.int32), (4, 4, 1), allow_single=True).shape
    (1, 4, 4, 1)
    """
    x = np.asarray(images)
    if allow_single and x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or (input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape)):
        raise shape_error(x.shape, input_shape, what, where)
    top = 2 ** int(input_bits) - 1
    if x.dtype == np.uint8 and top == 255:
        return x
    numeric = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not numeric or (not convert and x.dtype != np.uint8):
        raise ValueError(f"{where}Expected uint8 {what}. Received dtype {x.dtype}. {_fix(top)}")
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= top
                       and np.all(np.round(x) == x)):
        raise ValueError(f"{where}Expected uint8 pixel codes (whole numbers in [0, {top}]). "
                         f"Received dtype {x.dtype} with values in [{x.min()}, {x.max()}] that "
                         f"are not all whole numbers in range. {_fix(top)}")
    return x.astype(np.uint8)
