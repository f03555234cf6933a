#include "common.hpp"

namespace microcnn::bind {

void bind_normalization(py::module_& m) {}

}  // namespace microcnn::bind
