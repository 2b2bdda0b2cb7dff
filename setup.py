"""Build keras_nna and compile its emulator op against the installed TensorFlow.

The emulator is a TensorFlow custom op (C++). It must be compiled with the
same TensorFlow it will be loaded into, so TensorFlow has to be importable
when this script runs: install with ``pip install --no-build-isolation .``
after installing ``tensorflow-cpu`` (or ``tensorflow``).  If the build cannot
find TensorFlow, the package installs without the compiled op and
``keras_nna.runtime`` compiles it on first use into a cache directory.
"""

import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CC_DIR = os.path.join("keras_nna", "runtime", "cc")
EXTRA_CFLAGS = ["-O3", "-g0", "-fPIC", "-Wno-deprecated-declarations",
                "-Wno-interference-size", "-Wno-unused-result"]


class BuildTFOp(build_ext):
    """Compiles the op with ``tf.sysconfig`` flags (keeps the C++11 ABI TF uses)."""

    def build_extensions(self):
        try:
            import tensorflow as tf
        except ImportError:
            print("keras_nna: TensorFlow not importable at build time; the emulator "
                  "op will be compiled on first use.")
            self.extensions = []
            return
        compile_flags = tf.sysconfig.get_compile_flags()
        link_flags = tf.sysconfig.get_link_flags()
        # setuptools adds "-g" and "-O2"; we override below and drop -g via -g0.
        for ext in self.extensions:
            ext.extra_compile_args = compile_flags + EXTRA_CFLAGS
            ext.extra_link_args = link_flags
        self.compiler.compiler_so = [a for a in self.compiler.compiler_so if a not in ("-g", "-O2")]
        if "-Wstrict-prototypes" in self.compiler.compiler_so:
            self.compiler.compiler_so.remove("-Wstrict-prototypes")
        # No build-machine RUNPATH (Python's LDSHARED adds -Wl,-rpath,<prefix>/lib): the op
        # needs only libtensorflow_framework.so.2, which TensorFlow has loaded before
        # tf.load_op_library runs, so the dynamic linker finds it by its soname.
        self.compiler.linker_so = [a for a in self.compiler.linker_so
                                   if not a.startswith(("-Wl,-rpath", "-Wl,-R"))]
        super().build_extensions()

    def get_ext_filename(self, ext_name):
        # A TF op library, not a Python module: plain name, no ABI tag.
        return os.path.join(*ext_name.split(".")) + ".so"


setup(
    ext_modules=[
        Extension(
            "keras_nna.runtime._nna_ops",
            sources=sorted(glob.glob(os.path.join(CC_DIR, "*.cc"))),
            include_dirs=[CC_DIR],
            language="c++",
        )
    ],
    cmdclass={"build_ext": BuildTFOp},
)
