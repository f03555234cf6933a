#include "common.hpp"

namespace microcnn::bind {

void bind_gemm(py::module_& m) {}

}  // namespace microcnn::bind
