// Bindings: bf16 training kernels (bf16_train.hpp).
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/bf16.hpp"
#include "microcnn/bf16_train.hpp"
#include "shared.hpp"

namespace microcnn::bind {

py::array_t<uint16_t> pack_bf16_matrix(const py::handle& w_obj, bool transposed) {
  auto w = f32(w_obj, "w", 2);
  expect_nonempty(w, "w");
  const int64_t K = w.shape(0), M = w.shape(1);
  py::array_t<uint16_t> out(std::vector<py::ssize_t>{transposed ? bf16_packed_size(M, K) : bf16_packed_size(K, M)});
  uint16_t* op = out.mutable_data();
  const float* wp = w.data();
  {
    py::gil_scoped_release release;
    (transposed ? pack_bf16_weights_transposed : pack_bf16_weights)(op, wp, K, M);
  }
  return out;
}

namespace {

py::array_t<float> round_bf16(const py::handle& x_obj) {
  auto x = f32(x_obj, "x", -1);
  auto y = empty_f32(shape_of(x));
  float* yp = y.mutable_data();
  const float* xp = x.data();
  const int64_t n = static_cast<int64_t>(x.size());
  {
    py::gil_scoped_release release;
    round_to_bf16(yp, xp, n);
  }
  return y;
}

}  // namespace

void bind_bf16_train(py::module_& m) {
  m.def("round_bf16", &round_bf16, py::arg("x"),
        "x float32 (any shape) -> a new array: each value rounded to the nearest bf16 (ties to even), as float32.");
  m.def(
      "pack_bf16_transposed", [](py::handle w) { return pack_bf16_matrix(w, true); }, py::arg("w"),
        "w (K,M) float32 -> pack_bf16(w.T) without the transposed copy.");
  m.def(
      "conv2d_forward_bf16",
      [](py::handle x, py::handle w, py::handle b, long long stride_h, long long stride_w, const std::string& padding,
         bool relu) { return conv_forward(&conv2d_forward_bf16, x, w, b, stride_h, stride_w, padding, relu); },
      py::arg("x"), py::arg("w"), py::arg("b").none(true),
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid", py::arg("relu") = false,
        "conv2d_forward with x and w rounded to bf16, float32 sums (bf16 training).");
  m.def(
      "conv2d_backward_bf16",
      [](py::handle dy, py::handle x, py::handle w, long long stride_h, long long stride_w, const std::string& padding,
         bool need_dx, bool need_db) {
        return conv_backward(&conv2d_backward_bf16, dy, x, w, stride_h, stride_w, padding, need_dx, need_db);
      },
      py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid", py::arg("need_dx") = true,
        py::arg("need_db") = true,
        "conv2d_backward with dy, x and w rounded to bf16 in every product, float32 sums (bf16 training).");
}

}  // namespace microcnn::bind
