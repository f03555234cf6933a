"""Learning-rate schedules and class weights vs closed-form values."""

import json
import math

import numpy as np
import pytest

from microcnn import schedules
from microcnn.class_weights import class_counts, compute_class_weight
from microcnn.schedules import CosineDecay, OneCycle


def test_cosine_decay_endpoints_and_midpoint():
    s = CosineDecay(0.1, decay_steps=100, alpha=0.2)
    assert s(0) == pytest.approx(0.1)
    assert s(50) == pytest.approx(0.1 * (0.8 * 0.5 + 0.2))
    assert s(100) == pytest.approx(0.1 * 0.2)
    assert s(1000) == pytest.approx(0.1 * 0.2)  # held at the floor after decay_steps
    steps = np.arange(0, 101)
    values = np.array([s(t) for t in steps])
    assert np.all(np.diff(values) <= 0)
    expected = 0.1 * (0.8 * 0.5 * (1 + np.cos(np.pi * steps / 100)) + 0.2)
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_cosine_decay_with_warmup_is_linear_then_cosine_from_the_target():
    s = CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=4)
    np.testing.assert_allclose([s(t) for t in range(5)], [0.0, 0.25, 0.5, 0.75, 1.0])
    assert s(4 + 5) == pytest.approx(0.5)
    assert s(4 + 10) == pytest.approx(0.0, abs=1e-15)
    assert s(10**6) == pytest.approx(0.0, abs=1e-15)


def test_one_cycle_shape():
    s = OneCycle(1.0, total_steps=100, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    values = np.array([s(t) for t in range(100)])
    peak = int(np.argmax(values))
    assert values[0] == pytest.approx(0.1)
    assert values[peak] == pytest.approx(1.0)
    assert peak == 29  # PyTorch's pct_start * total_steps - 1
    assert values[-1] == pytest.approx(0.1 / 100.0)
    assert np.all(np.diff(values[: peak + 1]) > 0) and np.all(np.diff(values[peak:]) < 0)
    # Half-way down the annealing phase the cosine is at the arithmetic middle.
    up, last = 29, 99
    assert s((up + last) / 2) == pytest.approx((1.0 + 1e-3) / 2)
    assert s(500) == pytest.approx(1e-3)
    assert math.isfinite(OneCycle(1.0, total_steps=2, pct_start=0.0)(0))


def test_schedules_serialize_round_trip_through_json():
    for s in (CosineDecay(0.01, 7, alpha=0.1, warmup_target=0.1, warmup_steps=3), OneCycle(0.5, 40)):
        config = json.loads(json.dumps(schedules.serialize(s)))
        again = schedules.deserialize(config)
        assert type(again) is type(s) and again.get_config() == s.get_config()
        assert [again(t) for t in range(12)] == [s(t) for t in range(12)]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CosineDecay(-1.0, 10), "initial_learning_rate"),
        (lambda: CosineDecay(0.1, 0), "decay_steps"),
        (lambda: CosineDecay(0.1, 10, alpha=1.5), "alpha"),
        (lambda: CosineDecay(0.1, 10, warmup_steps=-1), "warmup_steps"),
        (lambda: CosineDecay(0.1, 10, warmup_target=float("nan")), "warmup_target"),
        (lambda: OneCycle(0.1, 1), "total_steps"),
        (lambda: OneCycle(0.1, 10, div_factor=0), "div_factor"),
        (lambda: CosineDecay(0.1, 10)(-1), "step"),
        (lambda: schedules.deserialize({"class_name": "Nope"}), "config"),
    ],
)
def test_schedule_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_schedule_type_errors():
    with pytest.raises(TypeError, match="initial_learning_rate"):
        CosineDecay("0.1", 10)
    with pytest.raises(TypeError, match="schedule"):
        schedules.serialize(0.1)


def test_compute_class_weight_balanced():
    weights = compute_class_weight([10, 30, 60])
    assert weights == pytest.approx({0: 100 / 30, 1: 100 / 90, 2: 100 / 180})
    # Every class then carries the same total weight: count_c * w_c == n_samples / n_classes.
    assert [n * weights[c] for c, n in enumerate([10, 30, 60])] == pytest.approx([100 / 3] * 3)
    assert compute_class_weight([5, 5]) == {0: 1.0, 1: 1.0}
    assert compute_class_weight([3, 9], mode="none") == {0: 1.0, 1: 1.0}


def test_class_counts_and_bad_input():
    np.testing.assert_array_equal(class_counts(np.array([0, 2, 2, 1, 2]), 4), [1, 1, 3, 0])
    with pytest.raises(ValueError, match="labels"):
        class_counts(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="labels"):
        class_counts(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        class_counts(np.array([0]), 0)
    with pytest.raises(ValueError, match="class 1"):
        compute_class_weight([4, 0, 2])
    with pytest.raises(ValueError, match="counts"):
        compute_class_weight([])
    with pytest.raises(ValueError, match="mode"):
        compute_class_weight([1, 2], mode="auto")
