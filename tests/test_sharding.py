"""The pieces that make N processes follow 1 process, checked without MPI: dropout masks keyed by the
global row, batches cut into per-rank chunks, augmentation drawn for the whole batch."""

import numpy as np

from microcnn import _core, distributed
from microcnn._batches import ArraySource
from microcnn.augment import ImageAugmenter
from microcnn.data import BatchIterator


class FakeWorld:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    chunk = distributed.World.chunk


def test_dropout_offset_gives_the_rows_of_the_whole_batch_mask():
    x = np.random.default_rng(0).random((7, 5, 3), dtype=np.float32)
    whole = _core.dropout_forward(x, 0.4, 99, 4)
    rows = _core.dropout_forward(np.ascontiguousarray(x[3:]), 0.4, 99, 4, offset=3 * 15)
    np.testing.assert_array_equal(rows, whole[3:])
    dy = np.ones_like(x[3:])
    np.testing.assert_array_equal(_core.dropout_backward(dy, 0.4, 99, 4, 45) == 0, whole[3:] == 0)


def _gather(monkeypatch, size, make_batches):
    """Rank-by-rank batches, concatenated per step: what N processes see together."""
    per_rank = []
    for rank in range(size):
        monkeypatch.setattr(distributed, "_world", FakeWorld(rank, size))
        monkeypatch.setattr(distributed, "_detected", True)
        per_rank.append(make_batches())
    return [np.concatenate(step) for step in zip(*per_rank)]


def test_ranks_together_see_the_one_process_batches(monkeypatch):
    x = np.random.default_rng(1).random((23, 6, 6, 1), dtype=np.float32)
    y = np.arange(23, dtype=np.int32)

    def iterator_batches():
        it = BatchIterator(x, y, batch_size=5, augmenter=ImageAugmenter(seed=4), seed=7)
        return [xb for xb, _ in it]

    def array_batches():
        return [xb for xb, _, _ in ArraySource(x, y, None, 5).batches(np.random.default_rng(3), shard=True)]

    for make in (iterator_batches, array_batches):
        one = _gather(monkeypatch, 1, make)
        for size in (2, 3, 7):  # 7 ranks: the last batch (3 rows) leaves some ranks empty
            many = _gather(monkeypatch, size, make)
            assert len(many) == len(one)
            for a, b in zip(many, one):
                np.testing.assert_array_equal(a, b)
