"""Fixed-point factors the kernels requantise with (the one rounding rule
the host and the device share)."""
from __future__ import annotations

import math

import numpy as np

from ..graph import QLayer


def quantize_multiplier(real: float) -> tuple:
    """real ~= mult * 2^-shift with mult in [2^30, 2^31); (0, 1) for zero."""
    if not real > 0 or not math.isfinite(real):
        return 0, 1
    m, e = math.frexp(real)
    mult = int(round(m * (1 << 31)))
    shift = 31 - e
    if mult == 1 << 31:
        mult //= 2
        shift -= 1
    if shift > 62:
        return 0, 1
    if shift < 1:
        raise ValueError(f"requantisation multiplier {real:g} is too large")
    return mult, shift


def add_multipliers(ra: float, rb: float) -> tuple:
    """Common shift for the two input ratios of an add."""
    mx = max(ra, rb)
    shift = 31 - (math.frexp(mx)[1])
    while True:
        ma, mb = int(round(ra * 2.0 ** shift)), int(round(rb * 2.0 ** shift))
        if max(ma, mb) < 1 << 31:
            break
        shift -= 1
    shift = min(shift, 62)
    if shift < 1:
        raise ValueError("add input scales differ too much from the output scale")
    return int(round(ra * 2.0 ** shift)), int(round(rb * 2.0 ** shift)), shift


def channel_multipliers(layer: QLayer, sx: float, sy: float) -> tuple:
    """Per output channel (mult int32[], shift int8[]) for s_x * s_w[c] / s_y."""
    mults, shifts = zip(*(quantize_multiplier(sx * float(s) / sy) for s in layer.w_scale))
    return np.array(mults, dtype=np.int32), np.array(shifts, dtype=np.int8)


def pool_multipliers(layer: QLayer, sx: float, sy: float) -> tuple:
    """A windowed average pool's (mult int32[kh*kw], shift int8[kh*kw]):
    entry n-1 for s_x / (n s_y), a window divided by n."""
    kh, kw = layer.kernel
    mults, shifts = zip(*(quantize_multiplier(sx / (float(n) * sy)) for n in range(1, kh * kw + 1)))
    return np.array(mults, dtype=np.int32), np.array(shifts, dtype=np.int8)


def softmax_table(scale: float) -> np.ndarray:
    """exp(-scale * d) in Q30 for the 256 differences d of int8 logits."""
    d = np.arange(256, dtype=np.float64)
    return np.round(2.0 ** 30 * np.exp(-float(scale) * d)).astype(np.uint32)
