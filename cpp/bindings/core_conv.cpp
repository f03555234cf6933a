// Bindings: convolution, and the fused convolution + ReLU + 2x2 max-pool block (max pooling alone: core_pool.cpp).
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "common.hpp"
#include "core_checks.hpp"
#include "shared.hpp"
#include "microcnn/conv.hpp"

namespace microcnn::bind {

namespace {

// The checked inputs of a forward convolution: x, w and their geometry, and the optional bias b (K).
struct ConvForwardArgs : ConvArgs {
  std::optional<py::array_t<float>> b;
  ConvForwardArgs(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj, long long stride_h,
                  long long stride_w, const std::string& padding)
      : ConvArgs(x_obj, w_obj, stride_h, stride_w, padding), b(optional_f32(b_obj, "b", 1)) {
    if (b) expect_dim(*b, "b", 0, w.shape(3), "out-channels K = w.shape[3]");
  }
};

}  // namespace

py::array_t<float> conv_forward(ConvForwardFn kernel, const py::handle& x_obj, const py::handle& w_obj,
                                const py::handle& b_obj, long long stride_h, long long stride_w,
                                const std::string& padding, bool relu) {
  const ConvForwardArgs a(x_obj, w_obj, b_obj, stride_h, stride_w, padding);
  const ConvShape& s = a.s;
  auto y = empty_f32({s.N, s.P, s.Q, s.K});
  float* yp = y.mutable_data();
  const float *xp = a.x.data(), *wp = a.w.data(), *bp = data_or_null(a.b);
  {
    py::gil_scoped_release release;
    kernel(yp, xp, wp, bp, s, relu);
  }
  return y;
}

py::tuple conv_backward(ConvBackwardFn kernel, const py::handle& dy_obj, const py::handle& x_obj,
                        const py::handle& w_obj, long long stride_h, long long stride_w, const std::string& padding,
                        bool need_dx, bool need_db) {
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
    kernel(dxp, dwp, dbp, dyp, xp, wp, s);
  }
  return py::make_tuple(dx, dw, db);
}

namespace {

void def_conv(py::module_& m, ConvForwardFn forward, ConvBackwardFn backward) {
  m.def(
      "conv2d_forward",
      [forward](py::handle x, py::handle w, py::handle b, long long stride_h, long long stride_w,
                const std::string& padding, bool relu) {
        return conv_forward(forward, x, w, b, stride_h, stride_w, padding, relu);
      },
      py::arg("x"), py::arg("w"), py::arg("b").none(true), py::arg("stride_h") = 1, py::arg("stride_w") = 1,
      py::arg("padding") = "valid", py::arg("relu") = false,
      "x (N,H,W,C), w (R,S,C,K), b (K,) or None -> y (N,P,Q,K).");
  m.def(
      "conv2d_backward",
      [backward](py::handle dy, py::handle x, py::handle w, long long stride_h, long long stride_w,
                 const std::string& padding, bool need_dx, bool need_db) {
        return conv_backward(backward, dy, x, w, stride_h, stride_w, padding, need_dx, need_db);
      },
      py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("stride_h") = 1, py::arg("stride_w") = 1,
      py::arg("padding") = "valid", py::arg("need_dx") = true, py::arg("need_db") = true,
      "dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> (dx or None, dw, db or None).");
}

// The 2x2 pooling of the conv output (P, Q): sizes and the int32 argmax range.
void expect_poolable(const ConvShape& s) {
  if (s.P < 2 || s.Q < 2)
    value_error("x: expected a conv output of at least 2x2 for the 2x2 max pool, got " + std::to_string(s.P) + "x" +
                std::to_string(s.Q));
  expect_int32_indexable(s.P, s.Q, s.K, "x");
}

py::tuple conv_relu_maxpool_forward(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj,
                                    long long stride_h, long long stride_w, const std::string& padding) {
  const ConvForwardArgs a(x_obj, w_obj, b_obj, stride_h, stride_w, padding);
  const ConvShape& s = a.s;
  expect_poolable(s);
  auto y = empty_f32({s.N, s.P / 2, s.Q / 2, s.K});
  py::array_t<int32_t> argmax(std::vector<py::ssize_t>{s.N, s.P / 2, s.Q / 2, s.K});
  float* yp = y.mutable_data();
  int32_t* ap = argmax.mutable_data();
  const float *xp = a.x.data(), *wp = a.w.data(), *bp = data_or_null(a.b);
  {
    py::gil_scoped_release release;
    conv2d_relu_maxpool_forward(yp, ap, xp, wp, bp, s);
  }
  return py::make_tuple(y, argmax);
}

py::tuple conv_relu_maxpool_backward(const py::handle& dy_obj, const py::handle& argmax_obj,
                                     const py::handle& y_obj, const py::handle& x_obj, const py::handle& w_obj,
                                     long long stride_h, long long stride_w, const std::string& padding,
                                     bool need_db) {
  auto dy = f32(dy_obj, "dy", 4);
  auto argmax = checked<int32_t>(argmax_obj, "argmax", 4);
  auto y = f32(y_obj, "y", 4);
  const ConvArgs a(x_obj, w_obj, stride_h, stride_w, padding);
  const ConvShape& s = a.s;
  expect_poolable(s);
  const std::vector<py::ssize_t> pooled{s.N, s.P / 2, s.Q / 2, s.K};
  const char* what = "the pooled output (N,P/2,Q/2,K) for x, w, strides and padding";
  expect_shape(dy, "dy", pooled, what);
  expect_shape(argmax, "argmax", pooled, what);
  expect_shape(y, "y", pooled, what);
  float *dwp, *dbp;
  py::object dw = optional_output(true, {s.R, s.S, s.C, s.K}, dwp);
  py::object db = optional_output(need_db, {s.K}, dbp);
  const float *dyp = dy.data(), *yp = y.data(), *xp = a.x.data();
  const int32_t* ap = argmax.data();
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = conv2d_relu_maxpool_backward(dwp, dbp, dyp, ap, yp, xp, s);
  }
  if (bad)
    value_error("argmax: expected every index inside its own 2x2 window (as conv2d_relu_maxpool_forward returns "
                "it), got " + std::to_string(bad) + " outside");
  return py::make_tuple(dw, db);
}

}  // namespace

void bind_core_conv(py::module_& m, py::module_& reference) {
  m.def(
      "conv2d_output_size",
      [](long long size, long long kernel, long long stride, const std::string& padding) {
        expect_positive(size, "size");
        expect_positive(kernel, "kernel");
        expect_stride(stride, "stride");
        const ConvShape s = conv_geometry(1, size, 1, 1, 1, kernel, 1, stride, 1, padding, "kernel", "kernel");
        return s.P;
      },
      py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      "Output length along one axis: valid: (size - kernel) // stride + 1; same: ceil(size / stride).");
  def_conv(m, &microcnn::conv2d_forward, &microcnn::conv2d_backward);
  def_conv(reference, &microcnn::reference::conv2d_forward, &microcnn::reference::conv2d_backward);

  m.def("conv2d_relu_maxpool_forward", &conv_relu_maxpool_forward, py::arg("x"), py::arg("w"),
        py::arg("b").none(true), py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid",
        "x (N,H,W,C), w (R,S,C,K), b (K,) or None -> (y (N,P//2,Q//2,K), argmax int32): 2x2 max pool of "
        "relu(conv + b), as maxpool2d_forward of conv2d_forward(..., relu=True).");
  m.def("conv2d_relu_maxpool_backward", &conv_relu_maxpool_backward, py::arg("dy"), py::arg("argmax"), py::arg("y"),
        py::arg("x"), py::arg("w"), py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid",
        py::arg("need_db") = true,
        "dy, argmax, y (N,P//2,Q//2,K), x (N,H,W,C), w (R,S,C,K) -> (dw, db or None) of the fused block.");
}

}  // namespace microcnn::bind
