#include <pybind11/stl.h>

#include "common.hpp"
#include "microcnn/gemm.hpp"

namespace microcnn::bind {

void bind_gemm(py::module_& m) {
  m.def(
      "sgemm",
      [](const py::handle& a_obj, const py::handle& b_obj) {
        auto a = f32(a_obj, "a", 2);
        auto b = f32(b_obj, "b", 2);
        expect_nonempty(a, "a");
        expect_nonempty(b, "b");
        expect_dim(b, "b", 0, a.shape(1), "a.shape[1] (K)");
        const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
        auto c = empty_f32({M, N});
        const float* pa = a.data();
        const float* pb = b.data();
        float* pc = c.mutable_data();
        {
          py::gil_scoped_release release;
          microcnn::sgemm(pc, pa, pb, M, N, K);
        }
        return c;
      },
      py::arg("a"), py::arg("b"), "a (M,K) @ b (K,N) -> (M,N); the packed SGEMM every conv and dense layer uses.");
  m.def("kernel_isa", &microcnn::kernel_isa_name,
        "The dispatched GEMM micro-kernel: \"avx512\", \"avx2/fma\" or \"generic\".");
  m.def("available_kernel_isas", &microcnn::available_kernel_isas,
        "Micro-kernels this build and CPU can run, best last (for tests and benchmarks).");
  m.def(
      "set_kernel_isa",
      [](const std::string& name) {
        const auto names = microcnn::available_kernel_isas();
        if (!microcnn::set_kernel_isa(name)) {
          std::string list;
          for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
          value_error("name: expected one of " + list + ", got '" + name + "'");
        }
      },
      py::arg("name"),
      "Force a micro-kernel (\"generic\", \"avx2\", \"avx512\"); like the MICROCNN_ISA environment variable.");
}

}  // namespace microcnn::bind
