// Core kernel bindings: conv, pooling, activations, loss, dense, dropout, optimizers, and the naive reference
// kernels as the submodule _core.reference (so tests can compare the fast path with the naive C++).
#include "common.hpp"

namespace microcnn::bind {

void bind_core_conv(py::module_& m, py::module_& reference);   // core_conv.cpp (conv, fused conv + pool)
void bind_core_pool(py::module_& m);                           // core_pool.cpp
void bind_core_dense(py::module_& m, py::module_& reference);  // core_dense.cpp (dense, dense + Adam)
void bind_core_elementwise(py::module_& m);                    // core_elementwise.cpp (activations, loss, dropout)
void bind_core_optim(py::module_& m);                          // core_optim.cpp

void bind_core(py::module_& m) {
  py::module_ reference = m.def_submodule(
      "reference", "Naive C++ reference kernels (same signatures as the fast ones): the test oracle.");
  bind_core_conv(m, reference);
  bind_core_pool(m);
  bind_core_dense(m, reference);
  bind_core_elementwise(m);
  bind_core_optim(m);
}

}  // namespace microcnn::bind
