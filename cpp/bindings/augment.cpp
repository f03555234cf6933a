#include "common.hpp"

namespace microcnn::bind {

void bind_augment(py::module_& m) {}

}  // namespace microcnn::bind
