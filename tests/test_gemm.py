"""The packed SGEMM against numpy (float64 products) on awkward shapes, for every micro-kernel this CPU runs
and with 1 and 2 threads."""

import numpy as np
import pytest

from microcnn import _core

ISAS = _core.available_kernel_isas()

# (M, N, K): ones, primes, sizes just around the register tiles (4/6/12 rows, 16/32 columns) and the cache
# blocks (KC 256, MC 240/256, NC 2048); the larger ones take each thread split: over M (600x48, 263x16,
# 2101x2053), over N (3x2000) and over K with a reduction of partial results (31x29x6007).
SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 9),
    (13, 17, 19),
    (12, 32, 256),
    (11, 31, 257),
    (25, 33, 511),
    (97, 101, 103),
    (241, 47, 29),
    (263, 16, 600),
    (31, 29, 6007),
    (3, 2000, 400),
    (600, 48, 130),
    (2101, 2053, 5),
    # up to 64 rows B is read in place (no packing) with only a narrower last micro-panel packed; the
    # K split prefetches each next block when a block spans whole rows of B
    (32, 256, 5000),
    (1, 300, 2000),
    (7, 33, 1031),
    (64, 2100, 300),
    (65, 40, 300),
    (20, 70, 3001),
]


def _operands(m, n, k, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sgemm_matches_numpy(shape, isa, threads):
    m, n, k = shape
    a, b = _operands(m, n, k, seed=m * 7919 + n * 31 + k)
    got = _core.sgemm(a, b)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert got.shape == (m, n) and got.dtype == np.float32
    # float32 accumulation: error grows like sqrt(K) * |a||b|
    scale = np.sqrt(np.abs(a).astype(np.float64) ** 2 @ np.abs(b).astype(np.float64) ** 2)
    np.testing.assert_array_less(np.abs(got - want), 1e-5 * scale * np.sqrt(k) + 1e-6)


def test_sgemm_exact_on_small_integers(isa, threads):
    # Products and sums of small integers are exact in float32: every tile, edge and split must add up exactly.
    rng = np.random.default_rng(1)
    a = rng.integers(-3, 4, size=(53, 3000)).astype(np.float32)
    b = rng.integers(-3, 4, size=(3000, 45)).astype(np.float32)
    np.testing.assert_array_equal(
        _core.sgemm(a, b), (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)
    )


def test_sgemm_reproducible_for_a_thread_count(threads):
    a, b = _operands(40, 50, 9000, seed=3)
    np.testing.assert_array_equal(_core.sgemm(a, b), _core.sgemm(a, b))


def test_sgemm_does_not_modify_inputs():
    a, b = _operands(20, 30, 40, seed=4)
    a0, b0 = a.copy(), b.copy()
    _core.sgemm(a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_sgemm_rejects_bad_arguments():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="b"):
        _core.sgemm(a, np.ones((5, 2), np.float32))
    with pytest.raises(TypeError, match="a"):
        _core.sgemm(a.astype(np.float64), np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="b"):
        _core.sgemm(a, [[1.0]])
    with pytest.raises(ValueError, match="a"):
        _core.sgemm(np.ones((3, 4, 1), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        _core.sgemm(np.ones((4, 3), np.float32).T, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        _core.sgemm(np.ones((0, 4), np.float32), np.ones((4, 2), np.float32))


def test_kernel_isa_names():
    assert _core.kernel_isa() in ISAS
    assert ISAS[0] == "generic"
    assert set(ISAS) <= {"generic", "avx2/fma", "avx512"}
    with pytest.raises(ValueError, match="name"):
        _core.set_kernel_isa("sse9")


@pytest.mark.parametrize("wanted", ["generic", "avx2", "avx512"])
def test_environment_variable_lowers_the_isa(wanted, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, MICROCNN_ISA=wanted)
    out = subprocess.run(
        [sys.executable, "-c", "from microcnn import _core; print(_core.kernel_isa())"],
        env=env,
        cwd=tmp_path,  # not the source tree, whose microcnn/ has no compiled _core
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    order = ["generic", "avx2/fma", "avx512"]
    wanted_name = {"avx2": "avx2/fma"}.get(wanted, wanted)
    # never raised above what the CPU runs; lowered to the request when the CPU runs it
    assert out == (wanted_name if wanted_name in ISAS else ISAS[-1])
    assert order.index(out) <= order.index(wanted_name)
