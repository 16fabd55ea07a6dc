"""The one rule for a learning rate given by a user (Trainer(lr=...), the
model's default written by convert/plan): a finite number > 0. The board's
binding (modtinytrain.c) applies the same rule with the same messages."""
from __future__ import annotations

import math
import numbers

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
