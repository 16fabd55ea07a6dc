"""Builds the C core as a plain shared library that the simulator loads with ctypes."""
import importlib.util
import os

from setuptools import Extension, setup

CORE = "micropython_modules/tinytrain/core"
# the core's flags from its one list (core_flags.mk), read without importing the package
_spec = importlib.util.spec_from_file_location("core_flags", "host_tools/tinytrain/core_flags.py")
core_flags = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(core_flags)

setup(ext_modules=[Extension(
    "tinytrain._core",
    sources=[os.path.relpath(p) for p in core_flags.core_sources()] + ["host_tools/tinytrain/native/sim_api.c"],
    include_dirs=[CORE],
    # TT_HOST_SIMD: the host-only kernels (kernels/tt_*_host.c), this build only
    extra_compile_args=core_flags.core_cflags() + ["-O2", "-DTT_HOST_SIMD=1"],
)])
