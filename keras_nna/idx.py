"""The IDX file format of MNIST-style datasets: read and write, optionally gzipped.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order,
big-endian. `read_idx` validates every field against the file length, so a
truncated or foreign file gives a clear error instead of garbage.

Example:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "x-idx3-ubyte")
>>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
>>> read_idx(path).shape
(1, 2, 3)
"""

import gzip
import os

import numpy as np

__all__ = ["read_idx", "write_idx"]

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def write_idx(path, array):
    """Writes an array as an IDX file (gzipped when `path` ends in `.gz`).

    Args:
        path: File to write.
        array: Array of dtype uint8, int8, int16, int32, float32 or float64.

    Raises:
        ValueError: If the dtype has no IDX type code.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
    >>> write_idx(path, np.array([3, 1, 4], np.uint8))
    >>> read_idx(path)
    array([3, 1, 4], dtype=uint8)
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX files hold uint8, int8, int16, int32, float32 or float64 data, "
                         f"received dtype {array.dtype}. Cast the array first, e.g. "
                         f"`array.astype(np.uint8)`.")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(_IDX_DTYPES[code]).tobytes())


def _read_exact(f, n, path, what):
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"Corrupt IDX file {path}: expected {n} bytes of {what}, received "
                         f"{len(data)} (the file is truncated). Re-download or reinstall it, "
                         f"e.g. `apt-get install --reinstall dataset-fashion-mnist`.")
    return data


def read_idx(path, limit=None):
    """Reads an IDX file (the MNIST format), gzipped or not.

    The header is validated: two zero bytes, a known type code, then one
    big-endian uint32 per dimension. With `limit`, only the first `limit` items
    (along the first axis) are read, which is fast even on large gzip files.

    Args:
        path: The `.gz` or raw IDX file.
        limit: Read at most this many items. Defaults to `None` (all).

    Returns:
        A numpy array with the file's shape and native-endian dtype.

    Raises:
        ValueError: If the magic number or the data length is wrong.
        FileNotFoundError: If `path` does not exist.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "images-idx3-ubyte.gz")
    >>> write_idx(path, np.arange(24, dtype=np.uint8).reshape(3, 2, 4))
    >>> read_idx(path, limit=1)
    array([[[0, 1, 2, 3],
            [4, 5, 6, 7]]], dtype=uint8)
    """
    path = os.fspath(path)
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as f:
        try:
            magic = _read_exact(f, 4, path, "magic number")
        except (OSError, EOFError) as e:
            raise ValueError(f"Cannot decompress {path}: {e}. Expected a valid gzip file; "
                             f"re-download or reinstall it.") from e
        if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES or magic[3] == 0:
            raise ValueError(f"Corrupt IDX file {path}: expected a magic number 00 00 <type "
                             f"code in {sorted(_IDX_DTYPES)}> <ndim ≥ 1>, received bytes "
                             f"{magic.hex(' ')}. Re-download or reinstall the file.")
        dtype = np.dtype(_IDX_DTYPES[magic[2]])
        shape = list(np.frombuffer(_read_exact(f, 4 * magic[3], path, "dimensions"), ">u4"))
        shape = [int(d) for d in shape]
        if limit is not None:
            if not isinstance(limit, (int, np.integer)) or limit < 0:
                raise ValueError(f"`limit` must be a non-negative int or None, received "
                                 f"{limit!r}.")
            shape[0] = min(shape[0], int(limit))
        count = int(np.prod(shape, dtype=np.int64))
        try:
            data = _read_exact(f, count * dtype.itemsize, path, f"data of shape {tuple(shape)}")
        except (OSError, EOFError) as e:
            raise ValueError(f"Cannot decompress {path}: {e}. Expected a valid gzip file; "
                             f"re-download or reinstall it.") from e
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))
