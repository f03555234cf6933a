// Argument checks shared by the core kernel bindings (conv, pool, activations, loss, dense, dropout, optim),
// on top of common.hpp. The conv/pool geometry is validated here and nowhere else.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "microcnn/conv.hpp"

namespace microcnn::bind {

inline std::string num_str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// A float32 array, or nullopt for None.
inline std::optional<py::array_t<float>> optional_f32(const py::handle& obj, const char* name, int ndim,
                                                      bool writeable = false) {
  if (obj.is_none()) return std::nullopt;
  return f32(obj, name, ndim, writeable);
}

inline const float* data_or_null(const std::optional<py::array_t<float>>& a) { return a ? a->data() : nullptr; }

inline std::string shape_str(const std::vector<py::ssize_t>& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

inline void expect_shape(const py::array& a, const char* name, const std::vector<py::ssize_t>& expected,
                         const std::string& what) {
  if (shape_of(a) != expected)
    value_error(std::string(name) + ": expected shape " + shape_str(expected) + " (" + what + "), got " +
                shape_str(a));
}

inline void expect_finite(double v, const char* name) {
  if (!std::isfinite(v)) value_error(std::string(name) + ": expected a finite number, got " + num_str(v));
}

// lo <= v < hi (hi_inclusive: v <= hi); NaN fails.
inline void expect_in_range(double v, const char* name, double lo, double hi, bool hi_inclusive) {
  const bool ok = v >= lo && (hi_inclusive ? v <= hi : v < hi);
  if (!ok)
    value_error(std::string(name) + ": expected a value in [" + num_str(lo) + ", " + num_str(hi) +
                (hi_inclusive ? "]" : ")") + ", got " + num_str(v));
}

inline void expect_stride(long long v, const char* name) {
  if (v < 1) value_error(std::string(name) + ": expected a stride >= 1, got " + std::to_string(v));
}

inline Padding parse_padding(const std::string& padding) {
  if (padding == "valid") return Padding::Valid;
  if (padding == "same") return Padding::Same;
  value_error("padding: expected \"valid\" or \"same\", got \"" + padding + "\"");
}

// Any integer-like object (int, numpy integer, anything with __index__) reduced mod 2^64; floats are a
// TypeError. Used for seeds and counters, where only the bits matter.
inline uint64_t index_mod64(const py::handle& obj, const char* name) {
  PyObject* idx = PyNumber_Index(obj.ptr());
  if (!idx) {
    PyErr_Clear();
    type_error(std::string(name) + ": expected an integer, got " +
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  const unsigned long long v = PyLong_AsUnsignedLongLongMask(idx);
  Py_DECREF(idx);
  return static_cast<uint64_t>(v);
}

// Largest kernel extent or stride along one axis. Far above any image network's (the training CLI caps images at
// 8192 pixels a side), and small enough that every index product the kernels form -- stride*C, (H+R)*W*C,
// (P-1)*stride + R, ... -- stays far inside int64 for any array that fits in memory.
constexpr long long kMaxWindow = 1LL << 16;

// a*b*... of non-negative sizes, or a ValueError naming `what` when the product exceeds 2^62 (no signed overflow:
// each step is checked before it is taken).
inline int64_t checked_product(std::initializer_list<int64_t> sizes, const std::string& what) {
  int64_t product = 1;
  for (int64_t v : sizes) {
    if (__builtin_mul_overflow(product, v, &product) || product > (int64_t{1} << 62))
      value_error(what + ": the sizes are too large (their product exceeds 2^62 elements)");
  }
  return product;
}

inline void expect_window(long long v, const char* name, const char* what) {
  if (v > kMaxWindow)
    value_error(std::string(name) + ": expected a " + what + " <= " + std::to_string(kMaxWindow) + ", got " +
                std::to_string(v));
}

// The geometry of a conv or pooling layer from validated sizes: strides >= 1, a known padding, and a kernel
// no larger than the (padded) input. kernel_h / kernel_w name the arguments that carry the kernel height/width.
// Kernel extents and strides are bounded by kMaxWindow and the sizes the kernels index with are checked products.
inline ConvShape conv_geometry(py::ssize_t N, py::ssize_t H, py::ssize_t W, py::ssize_t C, py::ssize_t K,
                               long long R, long long S, long long stride_h, long long stride_w,
                               const std::string& padding, const char* kernel_h, const char* kernel_w) {
  if (R < 1) value_error(std::string(kernel_h) + ": expected a kernel height >= 1, got " + std::to_string(R));
  if (S < 1) value_error(std::string(kernel_w) + ": expected a kernel width >= 1, got " + std::to_string(S));
  expect_stride(stride_h, "stride_h");
  expect_stride(stride_w, "stride_w");
  // Array sizes are far below this; a size given as a number (conv2d_output_size) is not, and the padding
  // arithmetic below adds kernel extents to it.
  for (const int64_t size : {N, H, W, C, K})
    if (size > (int64_t{1} << 62)) value_error("size: expected at most 2^62, got " + std::to_string(size));
  expect_window(R, kernel_h, "kernel height");
  expect_window(S, kernel_w, "kernel width");
  expect_window(stride_h, "stride_h", "stride");
  expect_window(stride_w, "stride_w", "stride");
  const Padding pad = parse_padding(padding);
  // "same" always yields at least one output; "valid" needs the kernel to fit inside the input.
  if (pad == Padding::Valid && R > H)
    value_error(std::string(kernel_h) + ": expected a kernel height <= the input height " + std::to_string(H) +
                " with padding \"valid\", got " + std::to_string(R));
  if (pad == Padding::Valid && S > W)
    value_error(std::string(kernel_w) + ": expected a kernel width <= the input width " + std::to_string(W) +
                " with padding \"valid\", got " + std::to_string(S));
  const ConvShape s = make_conv_shape(N, H, W, C, K, R, S, stride_h, stride_w, pad);
  // Every buffer and index extent the kernels form: input with its padding, output, weights, im2col rows.
  checked_product({N, s.H + s.R, s.W + s.S, C}, "x");
  checked_product({N, s.P, s.Q, K}, "the output (N,P,Q,K)");
  checked_product({s.R, s.S, C, K}, std::string(kernel_h));
  checked_product({s.N, s.P, s.Q, s.R, s.S}, "the im2col rows (N*P*Q, R*S)");
  checked_product({s.stride_h, s.W + s.S, C}, "the input row step stride_h*W*C");
  return s;
}

// The checked x (N,H,W,C) and w (R,S,C,K) of a convolution and their geometry, as every conv binding takes them.
struct ConvArgs {
  py::array_t<float> x, w;
  ConvShape s;
  ConvArgs(const py::handle& x_obj, const py::handle& w_obj, long long stride_h, long long stride_w,
           const std::string& padding)
      : x(f32(x_obj, "x", 4)), w(f32(w_obj, "w", 4)) {
    expect_nonempty(x, "x");
    expect_nonempty(w, "w");
    expect_dim(w, "w", 2, x.shape(3), "in-channels C = x.shape[3]");
    s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(3), w.shape(0), w.shape(1), stride_h,
                      stride_w, padding, "w", "w");
  }
};

// A gradient the caller may not need: a new float32 array of `shape` and its data (or None and nullptr).
inline py::object optional_output(bool need, const std::vector<py::ssize_t>& shape, float*& data) {
  data = nullptr;
  if (!need) return py::none();
  auto a = empty_f32(shape);
  data = a.mutable_data();
  return std::move(a);
}

// argmax holds int32 flat indices into (H, W, C) per sample.
inline void expect_int32_indexable(py::ssize_t H, py::ssize_t W, py::ssize_t C, const char* name) {
  // In double: the sizes may come from a user-supplied x_shape, whose product could overflow int64.
  const double size = static_cast<double>(H) * static_cast<double>(W) * static_cast<double>(C);
  if (size > 2147483647.0)
    value_error(std::string(name) + ": expected H*W*C <= 2^31-1 (argmax is int32), got " + std::to_string(H) + "*" +
                std::to_string(W) + "*" + std::to_string(C));
}

// Adam's scalar arguments, shared by adam_update and dense_adam_update.
inline void check_adam_hyperparameters(double learning_rate, double beta_1, double beta_2, double epsilon,
                                       long long step) {
  expect_finite(learning_rate, "learning_rate");
  expect_in_range(beta_1, "beta_1", 0.0, 1.0, false);
  expect_in_range(beta_2, "beta_2", 0.0, 1.0, false);
  expect_finite(epsilon, "epsilon");
  if (epsilon < 0.0) value_error("epsilon: expected a value >= 0, got " + num_str(epsilon));
  if (step < 1) value_error("step: expected an integer >= 1, got " + std::to_string(step));
}

}  // namespace microcnn::bind
