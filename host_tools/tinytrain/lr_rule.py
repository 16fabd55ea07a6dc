"""The one rule for a learning rate given by a user (Trainer(lr=...),
Trainer.set_lr, the model's default written by convert/plan): a finite number
> 0. The board's binding (modtinytrain.c) applies the same rule with the same
messages. And the one schedule the planner trains with: linear decay."""
from __future__ import annotations

import math
import numbers
import struct

FLOAT32_LIMIT = 3.0e38  # the core's bound: the lr is a float32 on the device


def check_lr(lr) -> float:
    """lr as a float; TypeError for a non-number (bool included), ValueError
    for nan, an infinity or a value <= 0."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a number or None, not {type(lr).__name__}")
    try:
        value = float(lr)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value <= 0.0 or value > FLOAT32_LIMIT:
        raise ValueError("lr must be a finite number > 0")
    return value


def lr_argument(text: str) -> float:
    """argparse type of --lr: the rule above, as a usage error."""
    import argparse
    try:
        return check_lr(float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def linear_decay_lr(lr: float, step: int, total: int) -> float:
    """The rate of step `step` (0-based) of `total`: lr (total - step) / total,
    from lr down to lr / total at the last step. Rounded as a board whose
    floats are binary32 computes `lr * (total - step) / total` (one rounding
    per operation; the counts are exact below 2^24), so a script on the board
    gives the core the same rates the host simulation does.

    Why decay: with batch-1 SGD at a constant rate the last few samples move
    the model so much that where a run ends is noise (MCUNet on 300 digits:
    held-out accuracy swings 10-25 points from one 25-step point to the next
    at lr 0.03); decaying the rate to 0 lets the run settle (README,
    make bench-sparse)."""
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be an int >= 1, not {total!r}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < total:
        raise ValueError(f"step must be an int in [0, {total}), not {step!r}")
    if total >= 1 << 24:
        raise ValueError("total must be below 2^24 (exact in binary32)")
    return _f32(_f32(_f32(check_lr(lr)) * float(total - step)) / float(total))
