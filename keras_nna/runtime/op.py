"""Loader of the compiled emulator op, ``KerasNna>Run``.

The op is C++ (``keras_nna/runtime/cc``) compiled against the installed
TensorFlow. ``pip install --no-build-isolation .`` (or
``python setup.py build_ext --inplace``) puts ``_nna_ops.so`` next to this
file. Without it, the first use compiles the sources with ``g++`` into a cache
directory, ``$KERAS_NNA_CACHE`` or ``~/.cache/keras_nna/<tf version>/``, keyed
by a hash of the sources (~20 s once).

The op is registered under a namespaced name, ``KerasNna>Run`` (TensorFlow's
``Namespace>Name`` convention for custom ops); ``tf.load_op_library`` exposes
it as ``keras_nna_run``. Most users want :class:`keras_nna.runtime.Emulator`;
:func:`nna_run` is the raw op::

    outputs, stats = nna_run(program_bytes, images_uint8_nhwc)

The op parses and prepares a program once and caches it (the last 8
programs). A call with the same program tensor as before (an Emulator's, a
graph constant) finds it without reading the bytes; a new tensor holding the
same bytes is matched by comparing them. In eager mode, :func:`nna_run` keeps
one string tensor for each of the last few ``bytes`` objects it was given, so
a loop passing the same ``bytes`` neither copies nor compares them.
"""

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

import tensorflow as tf

from keras_nna.export.limits import resolve_limits

__all__ = ["load_op_library", "nna_run", "MODES"]

MODES = ("auto", "event", "dense", "skip")
"""Kernel choices: event scatter, dense dot products, dense dot products over the
non-zero 4-channel groups only (zero-skipping), or per-layer automatic."""

_HERE = os.path.dirname(os.path.abspath(__file__))
_CC_DIR = os.path.join(_HERE, "cc")
_LIB_NAME = "_nna_ops.so"
_EXTRA_FLAGS = ["-O3", "-g0", "-fPIC", "-shared", "-Wno-deprecated-declarations",
                "-Wno-interference-size", "-Wno-unused-result"]
_lock = threading.Lock()
_module = None
_tensors = {}  # id(bytes) -> (bytes, eager tensor): keeping the bytes keeps the id unique
_MAX_TENSORS = 4


def _sources():
    return sorted(glob.glob(os.path.join(_CC_DIR, "*.cc")) + glob.glob(os.path.join(_CC_DIR, "*.h")))


def _cache_dir():
    root = os.environ.get("KERAS_NNA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_nna")
    return os.path.join(root, tf.__version__)


def _compile(target):
    """Compiles the op sources into ``target`` with ``tf.sysconfig`` flags."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError(
            "keras_nna: the emulator op is not compiled and no C++ compiler was found. "
            "Install g++ (e.g. `apt-get install g++`) or reinstall keras_nna with "
            "`pip install --no-build-isolation .` where TensorFlow is installed.")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(fd)
    cmd = ([compiler] + [s for s in _sources() if s.endswith(".cc")] + ["-I" + _CC_DIR, "-o", tmp]
           + tf.sysconfig.get_compile_flags() + _EXTRA_FLAGS + tf.sysconfig.get_link_flags())
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError("keras_nna: compiling the emulator op failed:\n"
                               + " ".join(cmd) + "\n" + result.stderr[-4000:])
        os.replace(tmp, target)  # atomic: concurrent processes never see a partial file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_op_library():
    """Returns the loaded op module (``tf.load_op_library``), compiling it if needed.

    Returns:
        The module whose ``keras_nna_run`` function is the raw op.

    Raises:
        RuntimeError: if the op is not built and cannot be compiled.

    Example:

    >>> hasattr(load_op_library(), "keras_nna_run")
    True
    """
    global _module
    with _lock:
        if _module is not None:
            return _module
        local = os.path.join(_HERE, _LIB_NAME)
        if os.path.exists(local):
            try:
                _module = tf.load_op_library(local)
                return _module
            except (tf.errors.NotFoundError, OSError):
                pass  # built for another TensorFlow: fall back to the cache
        digest = hashlib.sha256()
        for path in _sources():
            with open(path, "rb") as f:
                digest.update(os.path.basename(path).encode() + b"\0" + f.read())
        target = os.path.join(_cache_dir(), "_nna_ops-%s.so" % digest.hexdigest()[:16])
        if not os.path.exists(target):
            _compile(target)
        _module = tf.load_op_library(target)
        return _module


def nna_run(program, images, mode="auto", limits=None):
    """Runs the ``KerasNna>Run`` op.

    Args:
        program: the program bytes (``bytes``) or a scalar ``tf.string`` tensor.
        images: uint8 tensor/array ``[N, H, W, C]`` matching the program header.
        mode: ``"auto"``, ``"event"`` or ``"dense"`` (kernel choice; results are
            identical).
        limits: optional dict raising some program limits for a trusted program
            (``max_work``, ``max_activation_bytes``, ``max_constant_bytes``; defaults
            ``keras_nna.export.limits.DEFAULT_LIMITS``, docs/bytecode.md "Program
            limits"). Work is per image: a batch of N costs N times as much.

    Returns:
        ``(outputs, stats)``: float32 ``[N, C]`` or ``[N, H, W, C]`` and int64
        ``[N, n_layers, 6]`` (docs/bytecode.md, "Statistics").

    Raises:
        ValueError: for an unknown ``mode`` or limit.
        tf.errors.InvalidArgumentError: for an invalid program or images that do
            not match it.

    Example:

    >>> import numpy as np
    >>> from keras_nna.export import LayerRecord, Program, write_program
    >>> pool = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1), in_bits=8,
    ...                    out_bits=8, pool=(2, 2), strides=(2, 2))
    >>> data = write_program(Program((2, 2, 1), 8, [pool]))
    >>> out, stats = nna_run(data, np.array([[[[1], [7]], [[0], [3]]]], np.uint8))
    >>> out.numpy().tolist(), stats.numpy()[0, 0].tolist()
    ([[7.0]], [3, 3, 0, 0, 4, 1])
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    limits = resolve_limits(limits)
    if isinstance(program, (bytearray, memoryview)):
        program = bytes(program)
    if isinstance(program, bytes) and tf.executing_eagerly():
        program = _program_tensor(program)
    return load_op_library().keras_nna_run(program=program, images=images, mode=mode, **limits)


def _program_tensor(data):
    """The eager string tensor of `data` (``bytes``), one per recent ``bytes`` object."""
    hit = _tensors.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    tensor = tf.constant(data)
    with _lock:
        while len(_tensors) >= _MAX_TENSORS:
            _tensors.pop(next(iter(_tensors)))
        _tensors[id(data)] = (data, tensor)
    return tensor
