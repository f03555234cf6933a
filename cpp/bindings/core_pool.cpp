// Bindings: max pooling (the fused convolution + ReLU + 2x2 max-pool block: core_conv.cpp).
#include <pybind11/stl.h>

#include <vector>

#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/pool.hpp"

namespace microcnn::bind {

namespace {

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

}  // namespace

void bind_core_pool(py::module_& m) {
  m.def("maxpool2d_forward", &maxpool_forward, py::arg("x"), py::arg("pool_h"), py::arg("pool_w"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("padding") = "valid",
        "x (N,H,W,C) -> (y (N,P,Q,C), argmax (N,P,Q,C) int32 per-sample flat input index).");
  m.def("maxpool2d_backward", &maxpool_backward, py::arg("dy"), py::arg("argmax"), py::arg("x_shape"),
        "dy (N,P,Q,C), argmax (N,P,Q,C) -> dx of x_shape (N,H,W,C).");
}

}  // namespace microcnn::bind
