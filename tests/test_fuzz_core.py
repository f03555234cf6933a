"""The kernels never crash the interpreter: random and hostile arguments for every binding (see fuzz_core.py;
the long run is `python tests/fuzz_core.py --cases 20000`), and the overflow-sized geometry of issue C1."""

import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fuzz_core

from microcnn import _core
from microcnn import layers as L


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_core_cases_in_subprocesses(seed):
    failures = fuzz_core.run_batches(seed, cases=300, per_process=300)
    assert failures == []


def test_huge_stride_from_the_layer_api_is_a_clear_error_not_a_crash(tmp_path):
    code = ("import numpy as np, microcnn as m; from microcnn import layers as L\n"
            "m.Sequential([L.Conv2D(4, 3, strides=(1, 2**62), padding='same', input_shape=(8, 8, 3))])"
            ".predict(np.zeros((1, 8, 8, 3), 'f4'))")
    # cwd: not the source tree, whose microcnn/ has no compiled _core (a non-editable install)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "ValueError: strides: expected integers <= 65536, got (1, 4611686018427387904)" in proc.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"strides": (1, 2**16 + 1)}, "strides"),
    ({"kernel_size": (2**20, 1)}, "kernel_size"),
])
def test_conv2d_bounds_its_geometry(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.Conv2D(4, **{"kernel_size": 3, **kwargs})
    with pytest.raises(ValueError, match=message if message != "kernel_size" else "pool_size"):
        L.MaxPooling2D(**({"pool_size": kwargs["kernel_size"]} if "kernel_size" in kwargs else kwargs))


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("stride", [2**61, 2**62, 2**63 - 1])
def test_conv_bindings_refuse_overflow_sized_strides(channels, stride):
    x, w = np.zeros((1, 8, 8, channels), np.float32), np.zeros((3, 3, channels, 4), np.float32)
    for padding in ("same", "valid"):
        with pytest.raises(ValueError, match="stride_w: expected a stride <= 65536"):
            _core.conv2d_forward(x, w, None, 1, stride, padding)
        with pytest.raises(ValueError, match="stride_h: expected a stride <= 65536"):
            _core.conv2d_relu_maxpool_forward(x, w, None, stride, 1, padding)
        with pytest.raises(ValueError, match="stride_w"):
            _core.maxpool2d_forward(x, 2, 2, 1, stride, padding)


def test_pool_window_and_shape_overflow_are_value_errors():
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="pool_h: expected a kernel height <= 65536"):
        _core.maxpool2d_forward(x, 2**40, 1, 1, 1, "same")
    with pytest.raises(ValueError, match="x_shape: expected sizes that fit in 64 bits"):
        _core.global_avgpool_backward(np.zeros((3, 3), np.float32), (3, 2**64, 6, 3))


def test_a_size_near_the_int64_limit_is_refused_before_the_padding_arithmetic():
    # Found by the fuzz run under UBSan: size + kernel overflowed int64 inside the geometry check.
    with pytest.raises(ValueError, match="size: expected at most 2\\^62"):
        _core.conv2d_output_size(2**63 - 1, 5, 4, "valid")
