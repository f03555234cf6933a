// Bindings: convolution and max pooling.
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/conv.hpp"
#include "microcnn/pool.hpp"

namespace microcnn::bind {

namespace {

using ConvForwardFn = void (*)(float*, const float*, const float*, const float*, const ConvShape&, bool);
using ConvBackwardFn = void (*)(float*, float*, float*, const float*, const float*, const float*, const ConvShape&);

// The checked inputs of a forward convolution: x (N,H,W,C), w (R,S,C,K), optional b (K), and their geometry.
struct ConvForwardArgs {
  py::array_t<float> x, w;
  std::optional<py::array_t<float>> b;
  ConvShape s;
  ConvForwardArgs(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj, long long stride_h,
                  long long stride_w, const std::string& padding)
      : x(f32(x_obj, "x", 4)), w(f32(w_obj, "w", 4)), b(optional_f32(b_obj, "b", 1)) {
    expect_nonempty(x, "x");
    expect_nonempty(w, "w");
    expect_dim(w, "w", 2, x.shape(3), "in-channels C = x.shape[3]");
    if (b) expect_dim(*b, "b", 0, w.shape(3), "out-channels K = w.shape[3]");
    s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(3), w.shape(0), w.shape(1), stride_h,
                      stride_w, padding, "w", "w");
  }
};

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
  auto x = f32(x_obj, "x", 4);
  auto w = f32(w_obj, "w", 4);
  expect_nonempty(x, "x");
  expect_nonempty(w, "w");
  expect_dim(w, "w", 2, x.shape(3), "in-channels C = x.shape[3]");
  const ConvShape s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(3), w.shape(0),
                                    w.shape(1), stride_h, stride_w, padding, "w", "w");
  expect_shape(dy, "dy", {s.N, s.P, s.Q, s.K}, "the conv output (N,P,Q,K) for x, w, strides and padding");
  py::object dx_obj = py::none(), db_obj = py::none();
  float *dxp = nullptr, *dbp = nullptr;
  if (need_dx) {
    auto dx = empty_f32({s.N, s.H, s.W, s.C});
    dxp = dx.mutable_data();
    dx_obj = dx;
  }
  auto dw = empty_f32({s.R, s.S, s.C, s.K});
  float* dwp = dw.mutable_data();
  if (need_db) {
    auto db = empty_f32({s.K});
    dbp = db.mutable_data();
    db_obj = db;
  }
  const float *dyp = dy.data(), *xp = x.data(), *wp = w.data();
  {
    py::gil_scoped_release release;
    kernel(dxp, dwp, dbp, dyp, xp, wp, s);
  }
  return py::make_tuple(dx_obj, dw, db_obj);
}

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

constexpr long long kInt32Max = 2147483647LL;

void expect_int32_indexable(py::ssize_t H, py::ssize_t W, py::ssize_t C, const char* name) {
  // In double: the sizes may come from a user-supplied x_shape, whose product could overflow int64.
  const double size = static_cast<double>(H) * static_cast<double>(W) * static_cast<double>(C);
  if (size > static_cast<double>(kInt32Max))
    value_error(std::string(name) + ": expected H*W*C <= 2^31-1 (argmax is int32), got " + std::to_string(H) + "*" +
                std::to_string(W) + "*" + std::to_string(C));
}

py::tuple maxpool_forward(const py::handle& x_obj, long long pool_h, long long pool_w, long long stride_h,
                          long long stride_w, const std::string& padding) {
  auto x = f32(x_obj, "x", 4);
  expect_nonempty(x, "x");
  expect_positive(pool_h, "pool_h");
  expect_positive(pool_w, "pool_w");
  const ConvShape s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), x.shape(3), pool_h, pool_w,
                                    stride_h, stride_w, padding, "pool_h", "pool_w");
  expect_int32_indexable(s.H, s.W, s.C, "x");
  auto y = empty_f32({s.N, s.P, s.Q, s.C});
  py::array_t<int32_t> argmax(std::vector<py::ssize_t>{s.N, s.P, s.Q, s.C});
  float* yp = y.mutable_data();
  int32_t* ap = argmax.mutable_data();
  const float* xp = x.data();
  {
    py::gil_scoped_release release;
    maxpool2d_forward(yp, ap, xp, s);
  }
  return py::make_tuple(y, argmax);
}

py::array_t<float> maxpool_backward(const py::handle& dy_obj, const py::handle& argmax_obj,
                                    const std::vector<long long>& x_shape) {
  auto dy = f32(dy_obj, "dy", 4);
  auto argmax = checked<int32_t>(argmax_obj, "argmax", 4);
  expect_nonempty(dy, "dy");
  expect_shape(argmax, "argmax", shape_of(dy), "dy.shape");
  if (x_shape.size() != 4)
    value_error("x_shape: expected 4 sizes (N, H, W, C), got " + std::to_string(x_shape.size()));
  for (long long v : x_shape)
    if (v < 1) value_error("x_shape: expected positive sizes, got a size of " + std::to_string(v));
  const long long N = x_shape[0], H = x_shape[1], W = x_shape[2], C = x_shape[3];
  if (N != dy.shape(0) || C != dy.shape(3))
    value_error("x_shape: expected N and C equal to dy's (" + std::to_string(dy.shape(0)) + ", " +
                std::to_string(dy.shape(3)) + "), got " + std::to_string(N) + ", " + std::to_string(C));
  expect_int32_indexable(H, W, C, "x_shape");
  const long long P = dy.shape(1), Q = dy.shape(2);
  const int32_t* ap = argmax.data();
  const long long limit = H * W * C;
  for (long long i = 0, n = N * P * Q * C; i < n; ++i)
    if (ap[i] < 0 || ap[i] >= limit)
      value_error("argmax: expected flat indices in [0, H*W*C = " + std::to_string(limit) + "), got " +
                  std::to_string(ap[i]));
  auto dx = empty_f32({N, H, W, C});
  float* dxp = dx.mutable_data();
  const float* dyp = dy.data();
  {
    py::gil_scoped_release release;
    maxpool2d_backward(dxp, dyp, ap, N, H, W, C, P, Q);
  }
  return dx;
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
  auto x = f32(x_obj, "x", 4);
  auto w = f32(w_obj, "w", 4);
  expect_nonempty(x, "x");
  expect_nonempty(w, "w");
  expect_dim(w, "w", 2, x.shape(3), "in-channels C = x.shape[3]");
  const ConvShape s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(3), w.shape(0),
                                    w.shape(1), stride_h, stride_w, padding, "w", "w");
  expect_poolable(s);
  const std::vector<py::ssize_t> pooled{s.N, s.P / 2, s.Q / 2, s.K};
  const char* what = "the pooled output (N,P/2,Q/2,K) for x, w, strides and padding";
  expect_shape(dy, "dy", pooled, what);
  expect_shape(argmax, "argmax", pooled, what);
  expect_shape(y, "y", pooled, what);
  auto dw = empty_f32({s.R, s.S, s.C, s.K});
  float* dwp = dw.mutable_data();
  py::object db_obj = py::none();
  float* dbp = nullptr;
  if (need_db) {
    auto db = empty_f32({s.K});
    dbp = db.mutable_data();
    db_obj = db;
  }
  const float *dyp = dy.data(), *yp = y.data(), *xp = x.data();
  const int32_t* ap = argmax.data();
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = conv2d_relu_maxpool_backward(dwp, dbp, dyp, ap, yp, xp, s);
  }
  if (bad)
    value_error("argmax: expected every index inside its own 2x2 window (as conv2d_relu_maxpool_forward returns "
                "it), got " + std::to_string(bad) + " outside");
  return py::make_tuple(dw, db_obj);
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

  m.def("maxpool2d_forward", &maxpool_forward, py::arg("x"), py::arg("pool_h"), py::arg("pool_w"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("padding") = "valid",
        "x (N,H,W,C) -> (y (N,P,Q,C), argmax (N,P,Q,C) int32 per-sample flat input index).");
  m.def("conv2d_relu_maxpool_forward", &conv_relu_maxpool_forward, py::arg("x"), py::arg("w"),
        py::arg("b").none(true), py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid",
        "x (N,H,W,C), w (R,S,C,K), b (K,) or None -> (y (N,P//2,Q//2,K), argmax int32): 2x2 max pool of "
        "relu(conv + b), as maxpool2d_forward of conv2d_forward(..., relu=True).");
  m.def("conv2d_relu_maxpool_backward", &conv_relu_maxpool_backward, py::arg("dy"), py::arg("argmax"), py::arg("y"),
        py::arg("x"), py::arg("w"), py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid",
        py::arg("need_db") = true,
        "dy, argmax, y (N,P//2,Q//2,K), x (N,H,W,C), w (R,S,C,K) -> (dw, db or None) of the fused block.");
  m.def("maxpool2d_backward", &maxpool_backward, py::arg("dy"), py::arg("argmax"), py::arg("x_shape"),
        "dy (N,P,Q,C), argmax (N,P,Q,C) -> dx of x_shape (N,H,W,C).");
}

}  // namespace microcnn::bind
