"""The lean inference path (microcnn/_infer_path.py): the same outputs as the plan's steps one by one, bit for
bit; buffers kept between calls and nothing else allocated; results never sharing memory; packed Dense
weights re-made after the weights change; the kernels' `out` and `packed` arguments."""

import threading
import tracemalloc

import numpy as np
import pytest
from _helpers import dense_operands
from _nets import small_seed_net

from microcnn import _core, layers, set_seed
from microcnn.model import Sequential


def traced_peak(call):
    """The peak of NumPy's (and Python's) traced allocations during call()."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def steps_one_by_one(model, x, logits=False):
    """The plan's ordinary path (a stop index keeps the lean path out)."""
    plan = model._current_plan()
    return plan.forward(x, False, logits=logits, stop=len(plan.steps))


@pytest.mark.parametrize("channels,size,batch", [(1, 28, 1), (4, 13, 5), (3, 20, 32), (3, 9, 2), (1, 11, 33)])
def test_lean_path_is_the_steps_bit_for_bit(channels, size, batch, threads):
    model = small_seed_net(channels, size)
    x = np.random.default_rng(batch).random((batch, size, size, channels), dtype=np.float32)
    want = steps_one_by_one(model, x)
    for _ in range(4):  # the second call runs on the kept buffers, the third on packed Dense weights
        np.testing.assert_array_equal(model.predict_on_batch(x), want)
    np.testing.assert_array_equal(model._current_plan().forward(x, False, logits=True),
                                  steps_one_by_one(model, x, logits=True))
    np.testing.assert_array_equal(model.predict(x, batch_size=4), steps_one_by_one(model, x))


def test_buffers_are_kept_and_results_are_new_arrays():
    model = small_seed_net(size=24)
    x = np.random.default_rng(0).random((32, 24, 24, 3), dtype=np.float32)
    first = model.predict_on_batch(x)
    ops = next(iter(model._current_plan()._lean._shapes.values()))
    buffers = [op.buf.__array_interface__["data"][0] for op in ops if getattr(op, "buf", None) is not None]
    assert len(buffers) == 4  # both conv steps and both Dense layers; the softmax's output is new each call
    second = model.predict_on_batch(x[::-1].copy())
    assert [op.buf.__array_interface__["data"][0] for op in ops if getattr(op, "buf", None) is not None] == buffers
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, model.predict_on_batch(x))  # the first result was not overwritten


def test_a_steady_state_call_allocates_only_its_result():
    """Traced (NumPy) allocations of a warm call: the returned probabilities, not the activations (32 x 12 x
    12 x 8 floats = 147 KB for the first step alone)."""
    model = small_seed_net(size=24)
    x = np.random.default_rng(0).random((32, 24, 24, 3), dtype=np.float32)
    for _ in range(4):  # buffers made, then the Dense weights packed (the third call)
        model.predict_on_batch(x)
    peak = traced_peak(lambda: model.predict_on_batch(x))
    assert peak < 8 * 1024, peak  # 32 x 4 floats and Python's own objects
    model._current_plan()._lean._shapes.clear()  # the same call with fresh buffers allocates them all
    cold = traced_peak(lambda: model.predict_on_batch(x))
    assert cold > 100 * 1024, cold


def test_packed_weights_follow_weight_changes():
    model = small_seed_net(size=16)
    rng = np.random.default_rng(3)
    x = rng.random((8, 16, 16, 3), dtype=np.float32)
    for _ in range(3):
        model.predict_on_batch(x)
    copies = [op.weights for op in next(iter(model._current_plan()._lean._shapes.values())) if hasattr(op, "weights")]
    assert all(c._packed is not None for c in copies)  # packed once the weights were the same for 3 calls
    np.testing.assert_array_equal(model.predict_on_batch(x), steps_one_by_one(model, x))
    weights = model.get_weights()
    weights[4][5, 1] += 1.0  # one weight of the hidden Dense: likely outside any sample
    model.set_weights(weights)
    assert all(c._packed is None for c in copies)  # dropped by the write
    for _ in range(3):
        np.testing.assert_array_equal(model.predict_on_batch(x), steps_one_by_one(model, x))
    assert all(c._packed is not None for c in copies)
    model.train_on_batch(x, rng.integers(0, 4, 8))
    np.testing.assert_array_equal(model.predict_on_batch(x), steps_one_by_one(model, x))
    for _ in range(3):
        model.predict_on_batch(x)
    model.layers[5]._weights["kernel"] *= 0.5  # an in-place write by the caller: the sample notices
    for _ in range(3):
        np.testing.assert_array_equal(model.predict_on_batch(x), steps_one_by_one(model, x))


def test_other_heads_and_shapes():
    model = small_seed_net(size=12, head=None)  # a linear last layer: its output is the result, a new array each call
    x = np.random.default_rng(4).random((6, 12, 12, 3), dtype=np.float32)
    a, b = model.predict_on_batch(x), model.predict_on_batch(x)
    assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, steps_one_by_one(model, x))
    for n in (1, 6, 2, 6, 3):  # more shapes than are kept
        np.testing.assert_array_equal(model.predict_on_batch(x[:n]), steps_one_by_one(model, x[:n]))
    flat = Sequential([layers.Input((3, 3, 2)), layers.Flatten(), layers.Dropout(0.2)])
    flat.build()
    z = np.ones((2, 3, 3, 2), np.float32)
    out = flat.predict_on_batch(z)
    assert out.shape == (2, 18) and not np.shares_memory(out, z)


def test_concurrent_calls_share_no_buffers():
    model = small_seed_net(size=20)
    rng = np.random.default_rng(5)
    inputs = [rng.random((16, 20, 20, 3), dtype=np.float32) for _ in range(4)]
    want = [steps_one_by_one(model, x) for x in inputs]
    errors = []

    def work(i):
        for _ in range(5):
            if not np.array_equal(model.predict_on_batch(inputs[i]), want[i]):
                errors.append(i)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []


@pytest.mark.parametrize("n,k,m", [(5, 333, 13), (32, 1000, 256), (7, 64, 40), (33, 129, 17), (2, 50, 9)])
def test_dense_forward_infer_matches_dense_forward(n, k, m, isa, threads):
    x, w, b = dense_operands(n + k, n, k, m)
    packed, nr = _core.pack_dense(w), _core.dense_packed_nr()
    out = np.full((n, m), np.nan, np.float32)
    for relu in (False, True):
        for bias in (b, None):
            want = _core.dense_forward(x, w, bias, relu=relu)
            np.testing.assert_array_equal(_core.dense_forward_infer(x, w, bias, relu, packed, nr), want)
            got = _core.dense_forward_infer(x, w, bias, relu, packed, nr, out=out)
            assert got is out or np.shares_memory(got, out)
            np.testing.assert_array_equal(out, want)
            np.testing.assert_array_equal(_core.dense_forward_infer(x, w, bias, relu), want)


def test_infer_kernels_reject_bad_out_and_packing():
    x = np.ones((6, 8), np.float32)
    w = np.ones((8, 5), np.float32)
    with pytest.raises(ValueError, match="out: expected shape"):
        _core.dense_forward_infer(x, w, None, out=np.empty((6, 4), np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        _core.dense_forward_infer(x, w, None, out=np.empty((6, 5)))
    with pytest.raises(ValueError, match="packed: expected pack_dense"):
        _core.dense_forward_infer(x, w, None, packed=np.ones(7, np.float32), packed_nr=_core.dense_packed_nr())
    xc = np.ones((1, 4, 4, 2), np.float32)
    wc = np.ones((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="out: expected an array that does not overlap x"):
        _core.conv2d_relu_maxpool_infer(xc, wc, None, out=xc.reshape(-1)[:8].reshape(1, 2, 2, 2))
    out = np.empty((1, 2, 2, 2), np.float32)
    got = _core.conv2d_relu_maxpool_infer(xc, wc, None, out=out)
    np.testing.assert_array_equal(out, _core.conv2d_relu_maxpool_infer(xc, wc, None))
    assert np.shares_memory(got, out)


def test_taps_and_prefixes_match_the_steps():
    """The open-set detector's pass (features up to the final Dense, a channel summary of every 4-D step
    output) through the lean path: the same arrays as the steps run one by one, unfused and identity steps
    included."""
    from microcnn._ood_layers import channel_stats

    set_seed(2)
    model = Sequential([
        layers.Input((12, 12, 4)),
        layers.Conv2D(6, 3, padding="same", activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.3),
        layers.Conv2D(5, 2, padding="valid"), layers.MaxPooling2D(2),  # no ReLU: two steps, not fused
        layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    plan = model._current_plan()
    split = plan.index(model.layers[-1])
    x = np.random.default_rng(6).random((9, 12, 12, 4), dtype=np.float32)
    f, want_stats = x, []
    for step in plan.steps[:split]:
        f = step.forward(f, False)
        if f.ndim == 4:
            want_stats.append(channel_stats(f))
    assert len(want_stats) == 4
    for _ in range(4):
        (out, feats, _), = list(model._predict_batches(x, 16, taps=True))
        np.testing.assert_array_equal(feats, np.concatenate([f] + want_stats, axis=1))
        np.testing.assert_array_equal(out, steps_one_by_one(model, x))
        got = plan.forward(x, False, stop=split)
        np.testing.assert_array_equal(got, f)
        assert not np.shares_memory(got, plan.forward(x, False, stop=split))
