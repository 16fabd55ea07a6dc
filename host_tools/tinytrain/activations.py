"""Activations an int8 model runs by table: sigmoid, tanh, hard swish and
leaky ReLU. This is the one place of their float functions and derivatives
(float forward, converters, tests) and of the two tables a model stores
(docs/arithmetic.md, "Activation tables"):

    T[q + 128] = clamp(round(f(s_x (q - z_x)) / s_y) + z_y, -128, 127)
    D[q + 128] = round(f'(s_x (q - z_x)) 2^shift), 0 where T clamped

for the 256 int8 inputs q, in float64, round half to even; `shift` is the
largest in [0, 30] that keeps every |D| <= 32767.

A function is named by a string: "sigmoid", "tanh", "hardswish", or
"leaky_relu:ALPHA" (the negative slope, e.g. "leaky_relu:0.01").
"""
from __future__ import annotations

import numpy as np

NAMES = ("sigmoid", "tanh", "hardswish", "leaky_relu")
MAX_SHIFT = 30


def parse(fn: str) -> tuple:
    """(name, alpha) of a function string; ValueError for an unknown one."""
    name, _, arg = fn.partition(":")
    if name not in NAMES or (arg and name != "leaky_relu"):
        raise ValueError(f"activation {fn!r}: one of sigmoid, tanh, hardswish, leaky_relu:ALPHA")
    alpha = float(arg) if arg else 0.01
    return name, alpha


def leaky_relu(alpha: float) -> str:
    return f"leaky_relu:{float(alpha)!r}"


def value(fn: str, x):
    name, alpha = parse(fn)
    x = np.asarray(x, dtype=np.float64)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # 1 / (1 + exp(-x)) without overflow
    if name == "tanh":
        return np.tanh(x)
    if name == "hardswish":
        return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0
    return np.where(x > 0, x, alpha * x)


def derivative(fn: str, x):
    """f'(x); at the kinks, PyTorch's choice (hard swish: x/3 + 1/2 on
    [-3, 3]; leaky ReLU: alpha at 0)."""
    name, alpha = parse(fn)
    x = np.asarray(x, dtype=np.float64)
    if name == "sigmoid":
        s = value("sigmoid", x)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if name == "hardswish":
        return np.where(x < -3.0, 0.0, np.where(x <= 3.0, x / 3.0 + 0.5, 1.0))
    return np.where(x > 0, 1.0, alpha)


def tables(fn: str, s_x: float, z_x: int, s_y: float, z_y: int) -> tuple:
    """(T int8[256], D int16[256], shift) for input quantisation (s_x, z_x)
    and output quantisation (s_y, z_y)."""
    x = float(np.float32(s_x)) * (np.arange(-128, 128, dtype=np.float64) - int(z_x))
    v = np.round(value(fn, x) / float(np.float32(s_y))) + int(z_y)
    table = np.clip(v, -128, 127).astype(np.int8)
    d = np.where((v >= -128) & (v <= 127), derivative(fn, x), 0.0)
    dmax = float(np.abs(d).max())
    shift = MAX_SHIFT
    while shift > 0 and np.abs(np.round(d * 2.0 ** shift)).max() > 32767:
        shift -= 1
    if dmax * 2.0 ** shift > 32767.5:
        raise ValueError(f"activation {fn!r}: derivative {dmax:g} too large for an int16 table")
    return table, np.round(d * 2.0 ** shift).astype(np.int16), shift
