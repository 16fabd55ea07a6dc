"""Builds the C core as a plain shared library that the simulator loads with ctypes."""
from glob import glob

from setuptools import Extension, setup

CORE = "micropython_modules/tinytrain/core"
FLAGS = ["-std=c99", "-O2", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra", "-Werror",
         "-Wdouble-promotion", "-Wfloat-conversion", "-fsingle-precision-constant"]

setup(ext_modules=[Extension(
    "tinytrain._core",
    sources=sorted(glob(f"{CORE}/*.c") + glob(f"{CORE}/kernels/*.c")) + ["host_tools/tinytrain/native/sim_api.c"],
    include_dirs=[CORE],
    extra_compile_args=FLAGS,
)])
