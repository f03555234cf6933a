"""The seed network in microcnn and in PyTorch (float64) with the same weights: predictions and one SGD step
agree. Skipped when PyTorch is not installed."""

import numpy as np
import pytest
from _nets import one_hot, seed_network

import microcnn
from microcnn import _core, optimizers

torch = pytest.importorskip("torch")
F = torch.nn.functional


def pool_gap(h):
    """Smallest gap between the two largest values of any positive 2x2 pooling window (NCHW). Near 0 the
    max-pool gradient's route is decided by rounding, so the comparison would be ill-conditioned there."""
    windows = torch.sort(F.unfold(h, 2, stride=2).reshape(h.shape[0], h.shape[1], 4, -1), dim=2).values
    gap = windows[:, :, 3] - windows[:, :, 2]
    return float(gap[windows[:, :, 3] > 0].min())


def torch_seed_forward(params, x, dropout_mask=None, gaps=None):
    """Keras semantics in PyTorch: NHWC input, 'same' padding of the 2x2 conv on the bottom/right, NHWC flatten."""
    (k1, b1, k2, b2, w3, b3, w4, b4) = params
    h = x.permute(0, 3, 1, 2)
    h = F.relu(F.conv2d(h, k1.permute(3, 2, 0, 1), b1, padding=1))
    if gaps is not None:
        gaps.append(pool_gap(h))
    h = F.max_pool2d(h, 2)
    h = F.relu(F.conv2d(F.pad(h, (0, 1, 0, 1)), k2.permute(3, 2, 0, 1), b2))
    if gaps is not None:
        gaps.append(pool_gap(h))
    h = F.max_pool2d(h, 2)
    h = h.permute(0, 2, 3, 1).reshape(len(h), -1)
    h = F.relu(h @ w3 + b3)
    if dropout_mask is not None:
        h = h * dropout_mask
    return h @ w4 + b4


def crosscheck(size=32, batch=8, lr=0.05, seed=0):
    """-> (max |prediction difference|, |loss difference|, max |weight difference| after one SGD step)."""
    microcnn.set_seed(seed)
    model = seed_network((size, size, 3), 3)
    model.compile(optimizer=optimizers.SGD(lr), loss="categorical_crossentropy")
    params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in model.get_weights()]
    rng = np.random.default_rng(seed)
    for _ in range(20):  # data without near-ties in the pooling windows (see pool_gap)
        x = rng.random((batch, size, size, 3), dtype=np.float32)
        xt = torch.tensor(x, dtype=torch.float64)
        gaps = []
        with torch.no_grad():
            torch_seed_forward(params, xt, gaps=gaps)
        if min(gaps) > 1e-5:
            break
    labels = one_hot(rng.integers(0, 3, batch), 3)
    with torch.no_grad():
        expected = torch.softmax(torch_seed_forward(params, xt), dim=1).numpy()
    prediction_diff = float(np.abs(model.predict(x) - expected).max())

    dropout = model.layers[7]
    dropout.set_training_state({"mask_seed": np.array([1234 + seed]), "step": np.array([5])})
    # The mask microcnn's next training step will use, recomputed from its (seed, step) counter.
    mask = _core.dropout_forward(np.ones((batch, 256), np.float32), dropout.rate, 1234 + seed, 5)
    logits = torch_seed_forward(params, xt, torch.tensor(mask, dtype=torch.float64))
    loss = F.cross_entropy(logits, torch.tensor(labels.argmax(1)))
    loss.backward()
    ours = model.train_on_batch(x, labels)
    loss_diff = abs(ours - float(loss.detach()))
    with torch.no_grad():
        stepped = [(p - lr * p.grad).numpy() for p in params]
    weight_diff = max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), stepped))
    return prediction_diff, loss_diff, weight_diff


def test_seed_network_matches_pytorch():
    prediction_diff, loss_diff, weight_diff = crosscheck()
    assert prediction_diff < 1e-5
    assert loss_diff < 1e-5
    assert weight_diff < 1e-5
