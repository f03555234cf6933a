"""Training with precision="bf16": the plan's bf16 steps, gradients against finite differences of the bf16
forward, a fit that learns, save/load/resume keeping the precision, the CLI flag and bad values."""

import json

import numpy as np
import pytest
from _helpers import interrupt_at_epoch
from _nets import blobs, fit_fused_and_unfused_dense_update, tiny_network
from test_cli import make_dataset, train_args

import microcnn
from microcnn import _bf16_train
from microcnn.cli.train import main as train_main


def _compiled(precision, seed=0, **kwargs):
    microcnn.set_seed(seed)
    model = tiny_network(**kwargs)
    model.compile(optimizer=microcnn.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], precision=precision)
    return model


def test_plan_runs_bf16_steps_only_when_asked():
    bf16 = _compiled("bf16")._current_plan()
    kinds = {type(step) for step in bf16.steps}
    assert {_bf16_train.ConvReluPoolStep, _bf16_train.ConvStep, _bf16_train.DenseStep} <= kinds
    f32 = _compiled("f32")._current_plan()
    assert not any(isinstance(step, _bf16_train._Bf16Step) for step in f32.steps)


def _directional_derivatives(model, x, y, directions):
    """-> [(difference quotient, analytic derivative)] of the loss along each (weight index, d, h) of
    `directions`, the weights in model.named_weights() order."""
    _, grads = model._gradients(x, y)
    weights = list(model.named_weights().values())
    grads = list(grads.values())
    out = []
    for i, d, h in directions:
        w, saved = weights[i], weights[i].copy()
        losses = []
        for sign in (1, -1):
            w[...] = saved + sign * h * d
            losses.append(model._gradients(x, y)[0])
        w[...] = saved
        out.append(((losses[0] - losses[1]) / (2 * h), float(np.sum(grads[i].astype(np.float64) * d))))
    return out


def test_gradients_match_finite_differences_of_the_bf16_forward():
    """Directional derivatives of the loss, per kernel, along d = g/|g| + r/|r| (g the gradient, r random), so
    that g.d is well away from zero. The bf16 forward rounds weights and activations: a staircase at the scale
    of a bf16 step (2^-8 relative). The difference quotient uses a step h that moves the weights by ~5 bf16
    steps, large against the staircase; at that h the curvature (ReLU and max-pool switches) costs the float32
    model 1-2 % itself, so the bf16 error may exceed the float32 model's (same weights, directions and h) by
    3 % of the derivative (measured: at most 1.7 % in all). (Bias gradients are float32 sums of dy, checked against NumPy in
    test_bf16_train_kernels.py.)"""
    x, y = blobs(n=48)
    model16, model32 = _compiled("bf16"), _compiled("f32")
    _, grads = model16._gradients(x, y)
    rng = np.random.default_rng(5)
    directions = []
    for i, (name, w) in enumerate(model16.named_weights().items()):
        if name.endswith("kernel"):
            g, r = grads[name].astype(np.float64), rng.standard_normal(w.shape)
            d = (g / np.linalg.norm(g) + r / np.linalg.norm(r)).astype(np.float32)
            directions.append((i, d, 5 * 2.0**-8 * float(np.abs(w).mean()) / float(np.abs(d).mean())))
    assert len(directions) == 5
    results32 = _directional_derivatives(model32, x, y, directions)
    for (i, _, _), (numeric, analytic), (numeric32, analytic32) in zip(
            directions, _directional_derivatives(model16, x, y, directions), results32):
        assert abs(numeric32 - analytic32) <= 0.05 * abs(analytic32), (i, "float32", numeric32, analytic32)
        assert abs(numeric - analytic) <= abs(numeric32 - analytic32) + 0.03 * abs(analytic), (i, numeric, analytic)


def test_bf16_gradients_are_close_to_f32():
    x, y = blobs(n=24)
    _, g16 = _compiled("bf16")._gradients(x, y)
    _, g32 = _compiled("f32")._gradients(x, y)
    for (name, a), b in zip(g32.items(), g16.values()):
        rel = np.linalg.norm(b - a) / np.linalg.norm(a)
        assert 0 < rel < 0.05, (name, rel)  # bf16 differs (it rounds), by little (2^-9 relative per operand)


def test_fit_learns_and_keeps_float32_state():
    x, y = blobs(n=96)
    model = _compiled("bf16")
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.9
    assert all(w.dtype == np.float32 for w in model.get_weights())
    state = model.optimizer.get_state()
    assert all(v.dtype == np.float32 for k, v in state.items() if k != "iterations")
    # master weights keep float32 detail below bf16 resolution
    assert any(np.any(w.view(np.uint32) & 0xFFFF) for w in model.get_weights())


def test_save_load_keeps_precision(tmp_path):
    x, y = blobs(n=48)
    model = _compiled("bf16")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["compile"]["precision"] == "bf16"
    _compiled("f32").save(tmp_path / "f32")
    assert json.loads((tmp_path / "f32" / "config.json").read_text())["compile"]["precision"] == "f32"
    assert microcnn.load_model(tmp_path / "f32").precision == "f32"
    loaded = microcnn.load_model(tmp_path / "m")
    assert loaded.precision == "bf16"
    assert any(isinstance(step, _bf16_train._Bf16Step) for step in loaded._current_plan().steps)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # one more step from the saved optimizer state: the same weights as the original model's next step
    model.train_on_batch(x[:16], y[:16])
    loaded.train_on_batch(x[:16], y[:16])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_precision_is_rejected():
    model = tiny_network()
    with pytest.raises(ValueError, match=r"precision: expected one of 'f32', 'bf16', got 'fp16'"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="fp16")


def test_cli_precision_bf16_trains_and_resumes_identically(tmp_path, monkeypatch, capsys):
    data = make_dataset(tmp_path / "data")
    full = tmp_path / "full"
    assert train_main(train_args(data, full, "--precision", "bf16", epochs=2)) == 0
    config = json.loads((full / "config.json").read_text())
    assert config["compile"]["precision"] == "bf16"
    assert config["metadata"]["training"]["precision"] == "bf16"
    out = tmp_path / "resumed"
    original = interrupt_at_epoch(monkeypatch, 1)
    assert train_main(train_args(data, out, "--precision", "bf16", epochs=2)) == 130
    monkeypatch.setattr(microcnn.cli._training.Tracker, "on_epoch_begin", original)
    assert train_main([str(data), "--out", str(out), "--resume"]) == 0
    for a, b in zip(microcnn.load_model(full).get_weights(), microcnn.load_model(out).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cli_rejects_unknown_precision(tmp_path, capsys):
    assert train_main([str(tmp_path), "--precision", "fp8"]) == 2
    err = capsys.readouterr().err
    assert "--precision" in err and "fp8" in err


def test_every_kernel_isa_computes_the_same_step():
    """AVX2 runs the float32 kernels on bf16-rounded copies, the portable build (and AVX512_BF16) the packed bf16
    GEMM: the same products, summed in another order. An activation can round to the neighbouring bf16 value
    when the sums differ in their last bit, so not bit for bit: measured ~1e-7 relative, allowed 1e-4."""
    x, y = blobs(n=24)
    before = microcnn._core.kernel_isa()
    results = {}
    try:
        for isa in microcnn._core.available_kernel_isas():
            microcnn._core.set_kernel_isa(isa)
            results[isa] = _compiled("bf16")._gradients(x, y)
    finally:
        microcnn._core.set_kernel_isa(before)
    (loss, grads), *others = results.values()
    assert len(results) >= 2
    for other_loss, other in others:
        assert other_loss == pytest.approx(loss, rel=1e-4)
        for a, b in zip(grads.values(), other.values()):
            assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(a)


def _seed_bf16(shape=(36, 36, 3)):
    """The seed preset whose Dense kernel (5184 x 256) is above the factored-gradient threshold."""
    microcnn.set_seed(7)
    model = microcnn.presets.build_model("seed", shape, 3)
    model.layers[6].seed = 99  # the dropout mask seed
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="bf16")
    return model


def test_factored_dense_update_trains_the_same_bits_in_bf16():
    """A large Dense kernel's gradient stays factored (bf16-rounded x and dz) for Adam's one-pass update; with
    fuse_dense_update=False (what an allreduce over processes needs) it is an array first: the same weights."""
    fused, unfused = fit_fused_and_unfused_dense_update(_seed_bf16, (36, 36, 3))
    assert fused._current_plan().steps[3].factored and not unfused._current_plan().steps[3].factored


def test_grad_cam_inputs_on_a_bf16_model():
    model = _seed_bf16()
    x = np.random.default_rng(3).random((2, 36, 36, 3), dtype=np.float32)
    last_conv = model.layers[2]
    maps, grads = model.execution_plan(split_after=last_conv).conv_map_and_gradient(x, 1)
    assert maps.shape == grads.shape == (2, 18, 18, 64)
    assert np.all(np.isfinite(grads)) and np.any(grads != 0)
