"""Shuffled, augmented batches of an in-memory (or on-disk cached) image array, one epoch per iteration,
resumable at any batch (get_state / set_state). FolderDataset.batches() makes them for a folder."""

import numpy as np

from . import _core, images
from . import distributed as _distributed
from ._read_ahead import read_ahead
from .augment import ImageAugmenter
from .augment_presets import Augmentation


class BatchIterator:
    """Re-iterable once per epoch: yields (x float32 (B,H,W,C), y int32 (B,)) batches, reshuffled every
    epoch from a seeded generator and augmented per batch in C++. `len()` is the number of batches.
    x may be an array or a CachedImages (rows read from the on-disk cache, one batch ahead)."""

    def __init__(self, x, y, batch_size=32, shuffle=True, augmenter=None, seed=0, shard=True):
        if x.dtype not in (np.uint8, np.float32) or x.ndim != 4:
            raise ValueError(f"x: expected a uint8 or float32 (N, H, W, C) array, got {x.dtype} {x.shape}")
        if len(y) != len(x):
            raise ValueError(f"y: expected {len(x)} labels (one per image), got {len(y)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if augmenter is not None and not isinstance(augmenter, (ImageAugmenter, Augmentation)):
            raise TypeError(f"augmenter: expected an Augmentation, an ImageAugmenter or None, got "
                            f"{type(augmenter).__name__}")
        self.x, self.y = x, np.asarray(y, np.int32)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augmenter = augmenter
        self.rng = np.random.default_rng(seed)
        # Where the iteration is, for a checkpoint at any point (see get_state): epochs begun, the shuffle
        # generator's state when the current one began, and the augmenter's state before its latest batch.
        self.epochs_begun = 0
        self._epoch_start = self.rng.bit_generator.state
        self._augment_before = (0, None)
        self._skip = 0
        self._pending = None  # a state from set_state that no iteration has continued yet
        self.shard = shard  # under MPI, yield only this rank's rows of every batch (microcnn.distributed)

    def __len__(self):
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.x)
        self._pending = None
        self._epoch_start = self.rng.bit_generator.state
        self.epochs_begun += 1
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        first, self._skip = self._skip, 0
        epoch = self.epochs_begun - 1  # keys the per-sample streams of an Augmentation
        world = _distributed.world() if self.shard else None

        def reads():
            for start in range(first * self.batch_size, n, self.batch_size):
                idx = np.sort(order[start:start + self.batch_size])  # sorted: sequential reads, same set
                lo, hi = world.chunk(len(idx)) if world is not None else (0, len(idx))
                yield len(idx), lo, idx[lo:hi], self.x[idx[lo:hi]]  # under MPI: only this rank's rows

        # Images read from the on-disk cache are read one batch ahead while the current one trains.
        batches = read_ahead(reads()) if not isinstance(self.x, np.ndarray) else reads()
        for i, (total, lo, idx, xb) in enumerate(batches, first):
            xb = images.scale_8bit(xb) if xb.dtype == np.uint8 else np.ascontiguousarray(xb)
            if self.augmenter is not None:
                self._augment_before = (i, self.augmenter.get_state())
                if isinstance(self.augmenter, Augmentation):  # per-sample streams: any rank, any batch
                    xb = self.augmenter(xb, indices=idx, epoch=epoch)
                else:
                    xb = _augment_rows(self.augmenter, xb, total, lo)
            yield xb, self.y[idx]

    def get_state(self, batches_done=None):
        """The generator states (shuffle, augmentation) that continue the iteration after `batches_done`
        batches of the current epoch (None: between epochs), for a resumable checkpoint."""
        if self._pending is not None:  # restored, then stopped again before continuing: the same place
            return dict(self._pending)
        augment = self.augmenter.get_state() if self.augmenter is not None else None
        if batches_done is None:
            return {"epoch": self.epochs_begun, "batches_done": 0, "shuffle": self.rng.bit_generator.state,
                    "augment": augment}
        index, before = self._augment_before
        if self.augmenter is not None and index == batches_done and before is not None:
            augment = before  # that batch was drawn but its step never applied: it is drawn again
        return {"epoch": self.epochs_begun - 1, "batches_done": int(batches_done), "shuffle": self._epoch_start,
                "augment": augment}

    def set_state(self, state):
        """Continue from get_state(): the next iteration replays the epoch's shuffle and starts after the
        batches already done."""
        self._pending = dict(state)
        self.rng.bit_generator.state = state["shuffle"]
        self.epochs_begun = int(state.get("epoch", 0))
        self._skip = int(state.get("batches_done", 0))
        if self.augmenter is not None and state.get("augment") is not None:
            self.augmenter.set_state(state["augment"])


def _augment_rows(augmenter, xb, total, lo):
    """Augment rows [lo, lo + len(xb)) of a batch of `total`: the transforms are drawn for the whole batch
    (on every MPI rank alike), so a rank's rows get the transforms they get in a 1-process run."""
    if total == len(xb):
        return augmenter(xb)
    matrices = augmenter.random_matrices(total, xb.shape[1], xb.shape[2])[lo:lo + len(xb)]
    if augmenter.is_identity or len(xb) == 0:
        return xb.copy()
    return _core.affine_warp(xb, np.ascontiguousarray(matrices), augmenter.fill_mode, augmenter.cval)
