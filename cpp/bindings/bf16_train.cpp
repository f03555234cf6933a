// Bindings: bf16 training kernels (bf16_train.hpp).
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/bf16.hpp"
#include "microcnn/bf16_train.hpp"

namespace microcnn::bind {

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

py::array_t<uint16_t> pack_bf16_transposed(const py::handle& w_obj) {
  auto w = f32(w_obj, "w", 2);
  expect_nonempty(w, "w");
  py::array_t<uint16_t> out(std::vector<py::ssize_t>{bf16_packed_size(w.shape(1), w.shape(0))});
  uint16_t* op = out.mutable_data();
  const float* wp = w.data();
  {
    py::gil_scoped_release release;
    pack_bf16_weights_transposed(op, wp, w.shape(0), w.shape(1));
  }
  return out;
}

py::array_t<float> conv_forward_bf16(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj,
                                     long long stride_h, long long stride_w, const std::string& padding, bool relu) {
  const ConvArgs a(x_obj, w_obj, stride_h, stride_w, padding);
  const ConvShape& s = a.s;
  auto b = optional_f32(b_obj, "b", 1);
  if (b) expect_dim(*b, "b", 0, s.K, "out-channels K = w.shape[3]");
  auto y = empty_f32({s.N, s.P, s.Q, s.K});
  float* yp = y.mutable_data();
  const float *xp = a.x.data(), *wp = a.w.data(), *bp = data_or_null(b);
  {
    py::gil_scoped_release release;
    conv2d_forward_bf16(yp, xp, wp, bp, s, relu);
  }
  return y;
}

py::tuple conv_backward_bf16(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& w_obj,
                             long long stride_h, long long stride_w, const std::string& padding, bool need_dx,
                             bool need_db) {
  auto dy = f32(dy_obj, "dy", 4);
  const ConvArgs a(x_obj, w_obj, stride_h, stride_w, padding);
  const ConvShape& s = a.s;
  expect_shape(dy, "dy", {s.N, s.P, s.Q, s.K}, "the conv output (N,P,Q,K) for x, w, strides and padding");
  float *dxp, *dwp, *dbp;
  py::object dx = optional_output(need_dx, {s.N, s.H, s.W, s.C}, dxp);
  py::object dw = optional_output(true, {s.R, s.S, s.C, s.K}, dwp);
  py::object db = optional_output(need_db, {s.K}, dbp);
  const float *dyp = dy.data(), *xp = a.x.data(), *wp = a.w.data();
  {
    py::gil_scoped_release release;
    conv2d_backward_bf16(dxp, dwp, dbp, dyp, xp, wp, s);
  }
  return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_bf16_train(py::module_& m) {
  m.def("round_bf16", &round_bf16, py::arg("x"),
        "x float32 (any shape) -> a new array: each value rounded to the nearest bf16 (ties to even), as float32.");
  m.def("pack_bf16_transposed", &pack_bf16_transposed, py::arg("w"),
        "w (K,M) float32 -> pack_bf16(w.T) without the transposed copy.");
  m.def("conv2d_forward_bf16", &conv_forward_bf16, py::arg("x"), py::arg("w"), py::arg("b").none(true),
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid", py::arg("relu") = false,
        "conv2d_forward with x and w rounded to bf16, float32 sums (bf16 training).");
  m.def("conv2d_backward_bf16", &conv_backward_bf16, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid", py::arg("need_dx") = true,
        py::arg("need_db") = true,
        "conv2d_backward with dy, x and w rounded to bf16 in every product, float32 sums (bf16 training).");
}

}  // namespace microcnn::bind
