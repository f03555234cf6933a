#include "common.hpp"
#include "microcnn/threads.hpp"

namespace microcnn::bind {

void bind_threads(py::module_& m) {
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) value_error("n: expected a thread count >= 1, got " + std::to_string(n));
        microcnn::set_num_threads(n);
      },
      py::arg("n"), "Set the number of threads the kernels use.");
  m.def("get_num_threads", &microcnn::get_num_threads, "Number of threads the kernels use.");
  m.def("has_openmp", &microcnn::has_openmp, "True when the extension was built with OpenMP.");
}

}  // namespace microcnn::bind
