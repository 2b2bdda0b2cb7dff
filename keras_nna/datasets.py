"""Small offline image datasets and the helpers to feed them to keras_nna models.

Nothing here downloads at run time (except the optional, explicit fallback of
`load_fashion_mnist`). Every loader returns `(x_train, y_train), (x_test, y_test)`
with `x` an **uint8 NHWC** array of raw pixel codes 0–255 and `y` an `int32`
label vector. keras_nna models take raw pixels and start with
`keras.layers.Rescaling(1 / 255)`, so pass these arrays as they are.

| loader | source | images | classes |
| --- | --- | --- | --- |
| `load_digits` | scikit-learn (shipped) | 1,797 × 8×8×1 | 10 digits |
| `load_faces` | scikit-image `lfw_subset` (shipped) | 200 × 25×25×1 | 1 = face, 0 = not |
| `load_fashion_mnist` | Debian `dataset-fashion-mnist` IDX files | 70,000 × 28×28×1 | 10 |

`load_faces` is a tiny person-detection stand-in: 100 faces and 100 background
crops. `load_fashion_mnist` reads `/usr/share/datasets/fashion-mnist/`
(`apt-get install dataset-fashion-mnist`), or the folder named by `path=` or
by the environment variable `KERAS_NNA_FASHION_MNIST`; if that folder does not
exist it falls back to `keras.datasets.fashion_mnist.load_data()`, which needs
the network once.

To feed an image classifier that expects e.g. 96×96 RGB (such as
`keras_nna.models.AkidaNet`):

    (x_train, y_train), (x_test, y_test) = load_faces()
    x_train = prepare_for_akidanet(x_train, size=(96, 96))  # uint8 (150, 96, 96, 3)

`resize_images` (bilinear, rounded and clipped back to uint8) and `to_rgb`
(grey → 3 channels) are the two steps of `prepare_for_akidanet`. `read_idx` and
`write_idx` read and write the (optionally gzipped) IDX files of MNIST-style
datasets.
"""

import os

import numpy as np

from keras_nna.idx import read_idx, write_idx

__all__ = [
    "FASHION_MNIST_DIR",
    "load_digits",
    "load_faces",
    "load_fashion_mnist",
    "prepare_for_akidanet",
    "read_idx",
    "resize_images",
    "to_rgb",
    "write_idx",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package `dataset-fashion-mnist` installs its IDX files."""

_FASHION_ENV = "KERAS_NNA_FASHION_MNIST"
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# IDX type code -> big-endian numpy dtype.


def _check_fraction(name, value):
    if not isinstance(value, (float, int)) or isinstance(value, bool) or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a float strictly between 0 and 1 (the fraction of "
                         f"the images kept for testing), received {value!r}. Pass e.g. "
                         f"`{name}=0.2`.")


def _split(x, y, test_size, seed):
    """Stratified, seeded split of already-uint8 images."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def load_digits(test_size=0.2, seed=0):
    """Loads scikit-learn's 8×8 hand-written digits as uint8 NHWC images.

    The 16 grey levels (0–16) are scaled to 0–255 (`round(v * 255 / 16)`). The
    split is stratified and seeded, so it is the same on every machine.

    Args:
        test_size: Fraction of the 1,797 images kept for testing. Defaults to `0.2`.
        seed: Seed of the split. Defaults to `0`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shape `(n, 8, 8, 1)`
        and int32 labels 0–9.

    Raises:
        ValueError: If `test_size` is not strictly between 0 and 1.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_digits()
    >>> x_train.shape, x_train.dtype, int(x_train.max()), x_test.shape
    ((1437, 8, 8, 1), dtype('uint8'), 255, (360, 8, 8, 1))
    """
    from sklearn import datasets as sk_datasets

    _check_fraction("test_size", test_size)
    digits = sk_datasets.load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    return _split(x, digits.target.astype(np.int32), test_size, seed)


def load_faces(test_size=0.25, seed=0):
    """Loads scikit-image's LFW subset: 25×25 faces (label 1) versus background (0).

    `skimage.data.lfw_subset()` holds 200 grey images: the first 100 are faces,
    the other 100 non-face crops of the same photos. Its floats in [0, 1] are
    rounded to 0–255. The split is stratified and seeded.

    Args:
        test_size: Fraction of the 200 images kept for testing. Defaults to `0.25`.
        seed: Seed of the split. Defaults to `0`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shape
        `(n, 25, 25, 1)` and int32 labels (1 = face).

    Raises:
        ValueError: If `test_size` is not strictly between 0 and 1.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_faces()
    >>> x_train.shape, x_train.dtype, int(y_train.sum()), x_test.shape, int(y_test.sum())
    ((150, 25, 25, 1), dtype('uint8'), 75, (50, 25, 25, 1), 25)
    """
    from skimage import data as sk_data

    _check_fraction("test_size", test_size)
    images = np.asarray(sk_data.lfw_subset())
    x = np.round(images * 255.0).clip(0, 255).astype(np.uint8)[..., None]
    y = np.zeros(len(x), np.int32)
    y[:100] = 1
    return _split(x, y, test_size, seed)


def _find_idx(directory, stem):
    for name in (stem + ".gz", stem):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"{directory} exists but has no {stem}.gz (nor {stem}). Expected "
                            f"the four Fashion-MNIST IDX files {sorted(_FASHION_FILES.values())}; "
                            f"reinstall with `apt-get install --reinstall dataset-fashion-mnist` "
                            f"or point `path=` / ${_FASHION_ENV} at a complete copy.")


def _check_limit(name, value):
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                              or value < 1):
        raise ValueError(f"`{name}` must be a positive int or None (all images), received "
                         f"{value!r}. Pass e.g. `{name}=1000`.")


def load_fashion_mnist(path=None, limit_train=None, limit_test=None, allow_download=True):
    """Loads Fashion-MNIST (28×28 grey clothes, 10 classes) from local IDX files.

    The folder is `path`, else `$KERAS_NNA_FASHION_MNIST`, else
    `FASHION_MNIST_DIR` (Debian: `apt-get install dataset-fashion-mnist`). If
    that folder does not exist and `allow_download` is true, the data comes
    from `keras.datasets.fashion_mnist.load_data()` (network on first use).
    The limits keep the first images of each file (the files are already
    shuffled, and the classes stay roughly balanced).

    Args:
        path: Folder holding `train-images-idx3-ubyte.gz` and the three other
            IDX files. Defaults to `None` (environment variable, then
            `FASHION_MNIST_DIR`).
        limit_train: Keep only the first `limit_train` training images.
            Defaults to `None` (all 60,000).
        limit_test: Keep only the first `limit_test` test images. Defaults to
            `None` (all 10,000).
        allow_download: Fall back to `keras.datasets` when the folder is
            missing. Defaults to `True`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shape
        `(n, 28, 28, 1)` and int32 labels 0–9.

    Raises:
        FileNotFoundError: If neither the folder nor `keras.datasets` can
            provide the data, or the folder lacks a file.
        ValueError: If a file is corrupt or the images and labels disagree.

    Example:

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> for split, n in (("train", 6), ("t10k", 4)):
    ...     write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"),
    ...               rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    ...     write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"),
    ...               np.arange(n, dtype=np.uint8))
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist(folder, limit_train=5)
    >>> x_train.shape, x_train.dtype, y_train.tolist(), x_test.shape
    ((5, 28, 28, 1), dtype('uint8'), [0, 1, 2, 3, 4], (4, 28, 28, 1))
    """
    _check_limit("limit_train", limit_train)
    _check_limit("limit_test", limit_test)
    directory = os.fspath(path or os.environ.get(_FASHION_ENV) or FASHION_MNIST_DIR)
    if os.path.isdir(directory):
        (x_train, y_train), (x_test, y_test) = _fashion_mnist_from_folder(
            directory, limit_train, limit_test)
    else:
        (x_train, y_train), (x_test, y_test) = _fashion_mnist_from_keras(directory, allow_download)
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    return ((np.asarray(x_train, np.uint8)[..., None], np.asarray(y_train, np.int32)),
            (np.asarray(x_test, np.uint8)[..., None], np.asarray(y_test, np.int32)))


def _fashion_mnist_from_folder(directory, limit_train, limit_test):
    limits = {"train": limit_train, "test": limit_test}
    out = {key: read_idx(_find_idx(directory, stem), limit=limits[key[2:]])
           for key, stem in _FASHION_FILES.items()}
    for split in ("train", "test"):
        x, y = out["x_" + split], out["y_" + split]
        if x.ndim != 3 or x.dtype != np.uint8 or x.shape[1:] != (28, 28):
            raise ValueError(f"Corrupt Fashion-MNIST {split} images in {directory}: expected "
                             f"uint8 of shape (n, 28, 28), received {x.dtype} {x.shape}. "
                             f"Reinstall `dataset-fashion-mnist`.")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"Fashion-MNIST {split} labels in {directory} do not match the "
                             f"images: expected shape ({len(x)},), received {y.shape}. "
                             f"Reinstall `dataset-fashion-mnist`.")
    return (out["x_train"], out["y_train"]), (out["x_test"], out["y_test"])


def _fashion_mnist_from_keras(directory, allow_download):
    if not allow_download:
        raise FileNotFoundError(
            f"Fashion-MNIST folder {directory} does not exist and `allow_download=False`. "
            f"Install it with `apt-get install dataset-fashion-mnist`, or pass `path=` / "
            f"set ${_FASHION_ENV} to a folder with the IDX files.")
    try:
        import keras

        return keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # noqa: BLE001 - any failure means "no second route".
        raise FileNotFoundError(
            f"Fashion-MNIST is unavailable: expected the IDX files in {directory} "
            f"(install with `apt-get install dataset-fashion-mnist`, or pass `path=` / set "
            f"${_FASHION_ENV}), or a working `keras.datasets.fashion_mnist.load_data()` "
            f"(needs the network once), but the folder is missing and keras.datasets "
            f"failed with {type(e).__name__}: {e}") from e


def _check_images(x, fn):
    from keras_nna.export.images import check_images  # the one uint8 image rule

    return check_images(x, convert=False, where=f"`{fn}`: ")


def resize_images(x, size, batch_size=1024):
    """Resizes uint8 images bilinearly, rounding and clipping back to uint8.

    Uses `tf.image.resize(..., method="bilinear")` (with antialiasing off), in
    batches so that large datasets do not need a float copy in memory at once.

    Args:
        x: uint8 array of shape `(n, height, width, channels)`.
        size: `(new_height, new_width)`.
        batch_size: Images resized per call. Defaults to `1024`.

    Returns:
        uint8 array of shape `(n, new_height, new_width, channels)`.

    Raises:
        ValueError: If `x` is not 4-D uint8 or `size` is not two positive ints.

    Example:

    >>> x = np.array([[0, 255], [255, 0]], np.uint8).reshape(1, 2, 2, 1)
    >>> resize_images(x, (4, 4))[0, ..., 0]
    array([[  0,  64, 191, 255],
           [ 64,  96, 159, 191],
           [191, 159,  96,  64],
           [255, 191,  64,   0]], dtype=uint8)
    """
    import tensorflow as tf

    x = _check_images(x, "resize_images")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
        raise ValueError(f"`size` must be (height, width) with two positive ints, received "
                         f"{size!r}. Pass e.g. `size=(96, 96)`.")
    size = (int(size[0]), int(size[1]))
    if x.shape[1:3] == size:
        return x.copy()
    out = np.empty((len(x),) + size + x.shape[3:], np.uint8)
    for start in range(0, len(x), batch_size):
        chunk = tf.image.resize(tf.cast(x[start:start + batch_size], tf.float32), size,
                                method="bilinear")
        out[start:start + batch_size] = np.clip(np.round(chunk.numpy()), 0, 255)
    return out


def to_rgb(x):
    """Repeats the single channel of grey uint8 images three times.

    Args:
        x: uint8 array of shape `(n, height, width, 1)` (or `3`, returned as is).

    Returns:
        uint8 array of shape `(n, height, width, 3)`.

    Raises:
        ValueError: If `x` is not 4-D uint8 with 1 or 3 channels.

    Example:

    >>> to_rgb(np.full((2, 5, 5, 1), 7, np.uint8)).shape
    (2, 5, 5, 3)
    """
    x = _check_images(x, "to_rgb")
    if x.shape[-1] == 3:
        return x
    if x.shape[-1] != 1:
        raise ValueError(f"`to_rgb` expects 1 (grey) or 3 channels, received {x.shape[-1]} "
                         f"(shape {x.shape}). Select one channel first, e.g. `x[..., :1]`.")
    return np.repeat(x, 3, axis=-1)


def prepare_for_akidanet(x, size=(96, 96)):
    """Resizes grey or RGB uint8 images and makes them RGB, for `AkidaNet`.

    Args:
        x: uint8 array of shape `(n, height, width, 1 or 3)`.
        size: `(height, width)` of the network input. Defaults to `(96, 96)`.

    Returns:
        uint8 array of shape `(n, size[0], size[1], 3)`.

    Raises:
        ValueError: If `x` or `size` is invalid (see `resize_images`, `to_rgb`).

    Example:

    >>> prepare_for_akidanet(np.zeros((3, 8, 8, 1), np.uint8), size=(32, 32)).shape
    (3, 32, 32, 3)
    """
    return to_rgb(resize_images(x, size))
