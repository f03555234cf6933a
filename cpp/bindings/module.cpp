// microcnn._core: the module definition. Each kernel family registers its functions from its own file.
#include <pybind11/pybind11.h>

#include "microcnn/allocator.hpp"

namespace py = pybind11;

namespace microcnn::bind {
void bind_threads(py::module_& m);     // threads.cpp
void bind_core(py::module_& m);        // core.cpp: conv, pool, activations, loss, dense, dropout, optimizers
void bind_gemm(py::module_& m);        // gemm.cpp: packed SGEMM and CPU dispatch info
void bind_augment(py::module_& m);     // augment.cpp: batched affine warp for data augmentation
void bind_normalization(py::module_& m);  // normalization.cpp: batch norm, global average pooling
void bind_infer(py::module_& m);          // infer.cpp: inference-only fused kernels
void bind_bf16_train(py::module_& m);     // bf16_train.cpp: bf16 training kernels
}  // namespace microcnn::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "microcnn C++ kernels (float32, NHWC, C-contiguous). See microcnn/_core.pyi for signatures.";
#ifdef MICROCNN_VERSION
  m.attr("__version__") = MICROCNN_VERSION;
#endif
  // Reuse freed large blocks instead of re-faulting them every step (see allocator.hpp).
  m.attr("_allocator_tuned") = microcnn::tune_allocator();
  using namespace microcnn::bind;
  bind_threads(m);
  bind_core(m);
  bind_gemm(m);
  bind_augment(m);
  bind_normalization(m);
  bind_infer(m);
  bind_bf16_train(m);
}
