"""predict/evaluate through the inference steps (_inference.py): the same outputs as the layers run one by one,
and precision "bf16" close to float32."""

import numpy as np
import pytest
from _nets import small_seed_net

from microcnn import _core


def layer_by_layer(model, x):
    for layer in model.layers:
        x = layer.forward(x, False)
    return x


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 20), (3, 9)])
def test_predict_matches_layers_one_by_one(channels, size, threads):
    model = small_seed_net(channels, size)
    x = np.random.default_rng(0).random((5, size, size, channels), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, batch_size=2), layer_by_layer(model, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict_on_batch(x[:1]), layer_by_layer(model, x[:1]), rtol=1e-6, atol=1e-7)


def test_bf16_predictions_close_to_f32_and_follow_training():
    model = small_seed_net()
    rng = np.random.default_rng(2)
    x = rng.random((16, 20, 20, 3), dtype=np.float32)
    y = rng.integers(0, 4, 16)
    f32 = model.predict(x)
    model.precision = "bf16"
    bf16 = model.predict(x)
    assert not np.array_equal(bf16, f32)  # the bf16 path ran
    np.testing.assert_allclose(bf16, f32, atol=2e-2)
    model.train_on_batch(x, y)  # float32 step: the bf16 copies must follow the new weights
    after = model.predict(x)
    model.precision = "f32"
    np.testing.assert_allclose(after, model.predict(x), atol=2e-2)
    assert not np.allclose(after, bf16, atol=1e-7)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


def test_compile_precision():
    model = small_seed_net()
    assert model.precision == "f32"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="bf16")
    assert model.precision == "bf16"
    with pytest.raises(ValueError, match=r"precision: expected one of 'f32', 'bf16', got 'fp8'"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="fp8")
    assert _core.bf16_kernel() in ("avx512_bf16", "avx2/fma", "generic")
