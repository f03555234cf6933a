#include "common.hpp"

namespace microcnn::bind {

void bind_core(py::module_& m) {}

}  // namespace microcnn::bind
