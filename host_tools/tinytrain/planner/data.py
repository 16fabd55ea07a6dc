"""Training data as the planner takes it, and one measured fine-tuning run."""
from __future__ import annotations

import numpy as np

from ..graph import QGraph


def as_dataset(data, graph: QGraph, what: str = "data") -> tuple:
    """(inputs int8 (N, input bytes), labels int64 (N,)) from a pair
    (inputs, labels); inputs an int8 array (N, ...) or a sequence of buffers."""
    try:
        xs, ys = data
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a pair (inputs, labels)") from None
    n_in = graph.tensors[graph.input].numel
    if isinstance(xs, np.ndarray):
        if xs.dtype != np.int8:
            raise TypeError(f"{what}: inputs must be int8 (quantise them with "
                            f"tinytrain.builder.quantize_input), not {xs.dtype}")
        xs = np.ascontiguousarray(xs).reshape(len(xs), -1) if xs.ndim > 1 else xs.reshape(1, -1)
    else:
        xs = np.stack([np.frombuffer(bytes(memoryview(x)), dtype=np.int8) for x in xs]) if len(xs) else \
            np.zeros((0, n_in), np.int8)
    ys = np.asarray(ys).reshape(-1)
    if len(xs) == 0:
        raise ValueError(f"{what} is empty")
    if xs.shape[1] != n_in:
        raise ValueError(f"{what}: inputs have {xs.shape[1]} bytes, the model takes {n_in}")
    if len(ys) != len(xs):
        raise ValueError(f"{what}: {len(xs)} inputs but {len(ys)} labels")
    if not np.issubdtype(ys.dtype, np.integer):
        raise TypeError(f"{what}: labels must be integer class indices")
    n_cls = graph.tensors[graph.output].numel
    if ys.min() < 0 or ys.max() >= n_cls:
        raise ValueError(f"{what}: labels must lie in [0, {n_cls})")
    return np.ascontiguousarray(xs), ys.astype(np.int64)


def sample_orders(seed: int, n: int, epochs: int) -> list:
    """One permutation of range(n) per epoch, from `seed`."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def train_and_evaluate(model: bytes, train: tuple, val_x, val_y, seed: int, epochs: int, *,
                       decay: bool = True) -> float:
    """Fine-tune a compiled model on train (sample order from seed), return val
    accuracy. decay: the model's learning rate decays linearly to 0 over the
    run (lr_rule.linear_decay_lr, through Trainer.set_lr before each step);
    False: the model's rate throughout."""
    from ..lr_rule import linear_decay_lr
    from ..trainer import Trainer

    xs, ys = train
    t = Trainer(model)
    lr = t.info()["lr"]
    steps = [i for order in sample_orders(seed, len(xs), epochs) for i in order]
    for n, i in enumerate(steps):
        if decay:
            t.set_lr(linear_decay_lr(lr, n, len(steps)))
        t.step(xs[i], int(ys[i]))
    return t.evaluate(val_x, val_y)
