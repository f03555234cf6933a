"""The execution plan: its steps, the seed preset trained bit for bit as the straight sequence of kernel calls
the plan stands for, the unfused dense update, and the taps (features, Grad-CAM's map and gradient)."""

import numpy as np
import pytest
from _nets import fit_fused_and_unfused_dense_update, tiny_network

import microcnn
from microcnn import _core, layers
from microcnn.plan import ConvReluPoolStep, LayerStep
from microcnn.presets import build_model

SHAPE = (36, 36, 3)  # the seed net's Dense kernel is then 5184 x 256, above the factored-gradient threshold
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-7


def _seed_model():
    microcnn.set_seed(7)
    model = build_model("seed", SHAPE, 3)
    model.layers[6].seed = 99  # the dropout mask seed, so the kernel sequence below can use it
    model.compile(optimizer=microcnn.optimizers.Adam(LR, B1, B2, EPS), loss="sparse_categorical_crossentropy")
    return model


def _kernel_sequence_step(params, moments, x, labels, t):
    """One Adam step of the seed net as the plan runs it, written out kernel by kernel."""
    k1, b1, k2, b2, k3, b3, k4, b4 = params
    y1, a1 = _core.conv2d_relu_maxpool_forward(x, k1, b1, 1, 1, "same")
    y2, a2 = _core.conv2d_relu_maxpool_forward(y1, k2, b2, 1, 1, "same")
    f = y2.reshape(len(x), -1)
    h = _core.dense_forward(f, k3, b3, relu=True)
    d = _core.dropout_forward(h, 0.5, 99, t - 1)
    z = _core.dense_forward(d, k4, b4)
    _, _, dz = _core.softmax_cross_entropy(z, labels, None)  # the final softmax fused into the loss
    dd, dk4, db4 = _core.dense_backward(dz, d, k4)
    dh = _core.relu_backward(_core.dropout_backward(dd, 0.5, 99, t - 1), h)
    df, _, db3 = _core.dense_backward(dh, f, k3, need_dw=False)
    dy2 = df.reshape(y2.shape)
    dz2 = _core.maxpool2d_backward(_core.relu_backward(dy2, y2), a2, (len(x), *y1.shape[1:3], 64))
    dy1, dk2, db2 = _core.conv2d_backward(dz2, y1, k2, 1, 1, "same")
    dk1, db1 = _core.conv2d_relu_maxpool_backward(dy1, a1, y1, x, k1, 1, 1, "same")
    for i, grad in enumerate([dk1, db1, dk2, db2, None, db3, dk4, db4]):
        m, v = moments[i]
        if grad is None:  # the large kernel: gradient and update in one pass
            _core.dense_adam_update(params[i], f, dh, m, v, LR, B1, B2, EPS, t)
        else:
            _core.adam_update(params[i], grad, m, v, LR, B1, B2, EPS, t)


def test_seed_preset_trains_bit_for_bit_as_its_kernel_sequence():
    model = _seed_model()
    params = model.get_weights()
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    rng = np.random.default_rng(1)
    for t in (1, 2, 3):
        x = rng.random((8, *SHAPE), dtype=np.float32)
        labels = rng.integers(0, 3, 8).astype(np.int32)
        model.train_on_batch(x, labels)
        _kernel_sequence_step(params, moments, x, labels, t)
    for got, want in zip(model.get_weights(), params):
        np.testing.assert_array_equal(got, want)


def test_seed_preset_plan_steps():
    model = _seed_model()
    plan = model._current_plan()
    kinds = [type(step) for step in plan.steps]
    assert kinds == [ConvReluPoolStep, ConvReluPoolStep, LayerStep, LayerStep, LayerStep, LayerStep]
    assert plan.softmax_loss
    assert plan.steps[3]._backward_options == {"factored": True}
    model.fuse_dense_update = False
    assert model._current_plan().steps[3]._backward_options == {}
    model.compile(optimizer="adam", loss=microcnn.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert not model._current_plan().softmax_loss
    assert [type(s) for s in model.execution_plan(fuse=False).steps] == [LayerStep] * 8


def test_unfused_dense_update_trains_the_same_bits():
    fit_fused_and_unfused_dense_update(_seed_model, SHAPE)


def test_features_are_the_input_of_the_last_dense():
    model = _seed_model()
    x = np.random.default_rng(3).random((4, *SHAPE), dtype=np.float32)
    features = model.execution_plan().features(x)
    unfused = model.execution_plan(fuse=False)
    want = unfused.forward(x, training=False, stop=unfused.index(model.layers[-1]))
    assert features.shape == (4, 256)
    np.testing.assert_array_equal(features, want)


def test_conv_map_gradient_matches_finite_differences():
    microcnn.set_seed(5)
    model = tiny_network(head="dense_softmax")
    model.build()
    last_conv = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)][-1]
    with pytest.raises(ValueError, match="split_after"):
        tiny = microcnn.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(3, 3, activation="relu"),
                                    layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(2)])
        tiny.execution_plan().conv_map_and_gradient(np.zeros((1, 8, 8, 2), np.float32), 0)
    plan = model.execution_plan(split_after=last_conv)
    x = np.random.default_rng(4).standard_normal((3, 8, 8, 2)).astype(np.float32)
    classes = np.array([0, 2, 1])
    maps, dmaps = plan.conv_map_and_gradient(x, classes)
    assert maps.shape == dmaps.shape == (3, *last_conv.output_shape[1:])
    i = plan.index(last_conv)

    def scores(a):
        logits = plan.forward(a.astype(np.float32), training=False, logits=True, start=i + 1)
        return logits[np.arange(3), classes].astype(np.float64)

    direction = np.random.default_rng(6).standard_normal(maps.shape)
    eps = 1e-3
    numeric = (scores(maps + eps * direction) - scores(maps - eps * direction)) / (2 * eps)
    analytic = np.sum((dmaps * direction).reshape(3, -1), axis=1)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3)
    assert np.abs(dmaps).max() > 0
