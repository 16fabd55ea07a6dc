"""Epochs on stored samples with the frozen-prefix cache.

The layers before the first trained one (the frozen prefix) give the same
output, the cut, for a sample at every epoch: `epochs` computes it once per
sample, in the first epoch, keeps it in `store` and trains the later epochs
from it (Trainer.step_features), bit-identical to training on the inputs.

    losses = tinytrain.epochs(trainer, xs, labels, 3)          # store: a bytearray
    losses = tinytrain.epochs(trainer, xs, labels, 3, store=mm) # an mmap of a file, SDRAM...

Plain Python over the Trainer API, so the same code runs on the board.
"""


def feature_store_bytes(trainer, n_samples: int) -> int:
    """Bytes `epochs` keeps for n_samples samples."""
    return trainer.feature_bytes() * n_samples


def epochs(trainer, xs, labels, n_epochs: int, *, cache: bool = True, orders=None, store=None):
    """Train n_epochs over the samples xs[i] (int8 buffers of one input
    each) with labels[i]; orders: one sequence of sample indices per epoch
    (default: in order). cache=False trains every step on the input (the
    reference the cache must equal). store: a writable buffer of at least
    feature_store_bytes(trainer, len(xs)) bytes for the cut of every sample
    (default: a new bytearray). Returns the losses, one list per epoch."""
    n = len(xs)
    if len(labels) != n:
        raise ValueError(f"{n} inputs but {len(labels)} labels")
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 0:
        raise ValueError(f"n_epochs must be an int >= 0, not {n_epochs!r}")
    orders = [range(n)] * n_epochs if orders is None else list(orders)
    if len(orders) != n_epochs:
        raise ValueError(f"{len(orders)} orders for {n_epochs} epochs")
    if not cache:
        return [[trainer.step(xs[i], labels[i]) for i in order] for order in orders]
    fb = trainer.feature_bytes()
    if fb == 0:
        raise ValueError("the model has no frozen prefix: training reaches its first layer (use cache=False)")
    if store is None:
        store = bytearray(fb * n)
    view = memoryview(store).cast("B")
    if view.readonly or len(view) < fb * n:
        raise ValueError(f"store must be a writable buffer of at least {fb * n} bytes")
    done = bytearray(n)  # 1 once sample i's features are in the store
    losses = []
    for order in orders:
        epoch = []
        for i in order:
            f = view[i * fb:(i + 1) * fb]
            if not done[i]:
                trainer.features(xs[i], out=f)
                done[i] = 1
            epoch.append(trainer.step_features(f, labels[i]))
        losses.append(epoch)
    return losses
