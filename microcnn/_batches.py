"""Batch sources for fit/evaluate/predict: in-memory arrays or a re-iterable of (x, y[, sample_weight])."""

import numpy as np


class ArraySource:
    """Arrays sliced into batches (optionally reshuffled every epoch with the given generator)."""

    def __init__(self, x, y, sample_weight, batch_size):
        self.x, self.y, self.sample_weight, self.batch_size = x, y, sample_weight, batch_size
        self.input_shape = x.shape[1:]

    def __len__(self):
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def batches(self, rng=None, shard=False):
        """shard: under MPI, only this rank's rows of every batch (microcnn/distributed.py)."""
        from .distributed import world

        order = rng.permutation(len(self.x)) if rng is not None else None
        w = world() if shard else None
        for start in range(0, len(self.x), self.batch_size):
            first, end = start, min(start + self.batch_size, len(self.x))
            if w is not None:
                lo, hi = w.chunk(end - start)
                first, end = start + lo, start + hi
            index = slice(first, end) if order is None else order[first:end]
            yield (self.x[index], None if self.y is None else self.y[index],
                   None if self.sample_weight is None else self.sample_weight[index])

    def end_epoch(self):
        pass


class IterableSource:
    """Anything `iter()` can walk once per epoch (a list of batches, a data loader, a Keras-style Sequence
    with __len__/__getitem__), yielding (x, y) or (x, y, sample_weight) -- or bare x for predict."""

    def __init__(self, data, argument, steps=None):
        self.data, self.argument, self.steps = data, argument, steps
        self.input_shape = None
        self._iterator = None

    def __len__(self):
        if self.steps is not None:
            return self.steps
        return len(self.data)  # TypeError when unknown; callers check has_len first

    @property
    def has_len(self):
        if self.steps is not None:
            return True
        try:
            len(self.data)
        except TypeError:
            return False
        return True

    def _iterate(self):
        data = self.data
        if getattr(data, "__iter__", None) is None and hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            return (data[i] for i in range(len(data)))
        return iter(data)

    def batches(self, rng=None, shard=False):
        """Batches as the iterable yields them (under MPI, each rank's iterable yields that rank's rows)."""
        if self.steps is None:
            for item in self._iterate():
                yield self._unpack(item)
            return
        # With steps_per_epoch, one iterator runs across epochs (a one-shot generator works, as in Keras);
        # when it runs out it is restarted once, which only yields more for a re-iterable source.
        count, restarted = 0, False
        while count < self.steps:
            if self._iterator is None:
                self._iterator = self._iterate()
            try:
                item = next(self._iterator)
            except StopIteration:
                self._iterator = None
                if restarted:
                    return
                restarted = True
                continue
            restarted = False
            count += 1
            yield self._unpack(item)

    def _unpack(self, item):
        if isinstance(item, np.ndarray):
            return item, None, None
        if isinstance(item, (tuple, list)) and len(item) in (1, 2, 3):
            x, y, sw = (tuple(item) + (None, None))[:3]
            return x, y, sw
        raise ValueError(f"{self.argument}: expected batches (x, y) or (x, y, sample_weight), got "
                         f"{type(item).__name__}" + (f" of length {len(item)}" if hasattr(item, "__len__") else ""))

    def end_epoch(self):
        hook = getattr(self.data, "on_epoch_end", None)
        if callable(hook):
            hook()


def make_source(x, y, sample_weight, batch_size, argument="x", steps=None):
    """ArraySource for arrays (y required unless for predict), IterableSource otherwise."""
    # Other libraries' arrays convert; a list is samples when labels come with it, else a list of batches.
    array_like = hasattr(x, "__array__") and not isinstance(x, (list, tuple))
    if isinstance(x, np.ndarray) or array_like or (isinstance(x, list) and y is not None):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"{argument}: expected an array of samples with shape (samples, ...), got shape {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{argument}: got an empty array (0 samples)")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"y: expected {len(x)} labels (one per sample of {argument}), got {len(y)}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float32)
            if sample_weight.shape != (len(x),):
                raise ValueError(f"sample_weight: expected shape ({len(x)},), got {sample_weight.shape}")
        return ArraySource(x, y, sample_weight, batch_size)
    if y is not None or sample_weight is not None:
        raise ValueError(f"y / sample_weight: must be None when {argument} is an iterable of batches "
                         f"(the batches carry the labels), got y={type(y).__name__}")
    if getattr(x, "__iter__", None) is None and not (hasattr(x, "__getitem__") and hasattr(x, "__len__")):
        raise TypeError(f"{argument}: expected a NumPy array or a re-iterable of (x, y) batches, got {x!r}")
    return IterableSource(x, argument, steps)
