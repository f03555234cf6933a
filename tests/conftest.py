"""Fixtures shared by the kernel tests."""

import pytest

from microcnn import _core


@pytest.fixture(params=_core.available_kernel_isas())
def isa(request):
    """Run the test once per SIMD path this CPU has, restoring the dispatched one afterwards."""
    before = _core.kernel_isa()
    _core.set_kernel_isa(request.param)
    yield request.param
    _core.set_kernel_isa(before)


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run the test with 1 and with 2 kernel threads, restoring the thread count afterwards."""
    before = _core.get_num_threads()
    _core.set_num_threads(request.param)
    yield request.param
    _core.set_num_threads(before)
