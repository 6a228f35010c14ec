"""Builds the "native" engine's kernel (lstmjax/engines/native/recurrence.cc) during install.

The project's metadata is in pyproject.toml; this file only adds the C++ extension, which needs
the XLA FFI headers of the jaxlib it will run with (``jax.ffi.include_dir()``). pip's isolated
build installs the jaxlib that pyproject.toml's ``[build-system] requires`` pins, the oldest one
lstmjax supports: XLA keeps accepting handlers built against older FFI headers (xla/ffi/api/
c_api.h), so the kernel loads in every later jaxlib. The extension is optional: without a C++
compiler lstmjax still installs, and the engine says why it cannot run
(``lstmjax.engines.native.available()``).

It is compiled for the installing machine's CPU (``-march=native``); set LSTMJAX_NATIVE_MARCH
(e.g. ``x86-64-v3``) to build for another, e.g. a wheel for a cluster.
"""

import importlib.util
import os
import pathlib

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _ffi_include_dir() -> str:
    """jaxlib's include directory (what ``jax.ffi.include_dir()`` returns), found without
    importing jaxlib."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jaxlib is not installed in the build environment")
    return str(pathlib.Path(next(iter(spec.submodule_search_locations))) / "include")


class BuildNative(build_ext):
    """build_ext with jaxlib's FFI headers and the target CPU; a failure leaves the engine out."""

    def build_extensions(self):
        march = os.environ.get("LSTMJAX_NATIVE_MARCH", "native")
        try:
            include = _ffi_include_dir()
        except RuntimeError as error:
            print(f"lstmjax: not building the native engine: {error}")
            return
        for extension in self.extensions:
            extension.extra_compile_args += ["-isystem", include, f"-march={march}"]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "lstmjax.engines.native._recurrence",
            sources=["lstmjax/engines/native/recurrence.cc"],
            language="c++",
            extra_compile_args=["-O3", "-std=c++17"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildNative},
)
