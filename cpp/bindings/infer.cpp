// Bindings: inference-only kernels (infer.hpp).
#include <optional>
#include <string>

#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/bf16.hpp"
#include "microcnn/infer.hpp"
#include "shared.hpp"

namespace microcnn::bind {

namespace {

py::array_t<float> conv_relu_maxpool_infer(const py::handle& x_obj, const py::handle& w_obj,
                                           const py::handle& b_obj, long long stride_h, long long stride_w,
                                           const std::string& padding) {
  auto x = f32(x_obj, "x", 4);
  auto w = f32(w_obj, "w", 4);
  auto b = optional_f32(b_obj, "b", 1);
  expect_nonempty(x, "x");
  expect_nonempty(w, "w");
  expect_dim(w, "w", 2, x.shape(3), "in-channels C = x.shape[3]");
  if (b) expect_dim(*b, "b", 0, w.shape(3), "out-channels K = w.shape[3]");
  const ConvShape s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(3), w.shape(0),
                                    w.shape(1), stride_h, stride_w, padding, "w", "w");
  if (s.P < 2 || s.Q < 2)
    value_error("x: expected a conv output of at least 2x2 for the 2x2 max pool, got " + std::to_string(s.P) + "x" +
                std::to_string(s.Q));
  if (static_cast<double>(s.P) * static_cast<double>(s.Q) * static_cast<double>(s.K) > 2147483647.0)
    value_error("x: expected P*Q*K <= 2^31-1 for the conv output, got " + std::to_string(s.P) + "*" +
                std::to_string(s.Q) + "*" + std::to_string(s.K));
  auto y = empty_f32({s.N, s.P / 2, s.Q / 2, s.K});
  float* yp = y.mutable_data();
  const float *xp = x.data(), *wp = w.data(), *bp = data_or_null(b);
  {
    py::gil_scoped_release release;
    conv2d_relu_maxpool_infer(yp, xp, wp, bp, s);
  }
  return y;
}

py::array_t<uint16_t> packed_bf16(const py::handle& obj, int64_t K, int64_t M) {
  auto w = checked<uint16_t>(obj, "w", 1);
  if (w.shape(0) != bf16_packed_size(K, M))
    value_error("w: expected the packed bf16 weights of a (" + std::to_string(K) + ", " + std::to_string(M) +
                ") matrix, " + std::to_string(bf16_packed_size(K, M)) + " values (pack_bf16), got " +
                std::to_string(w.shape(0)));
  return w;
}


py::array_t<float> dense_bf16(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj,
                              long long units, bool relu) {
  auto x = f32(x_obj, "x", 2);
  expect_nonempty(x, "x");
  expect_positive(units, "units");
  auto w = packed_bf16(w_obj, x.shape(1), units);
  auto b = optional_f32(b_obj, "b", 1);
  if (b) expect_dim(*b, "b", 0, units, "units");
  auto y = empty_f32({x.shape(0), static_cast<py::ssize_t>(units)});
  float* yp = y.mutable_data();
  const float *xp = x.data(), *bp = data_or_null(b);
  const uint16_t* wp = w.data();
  {
    py::gil_scoped_release release;
    dense_forward_bf16(yp, xp, wp, bp, x.shape(0), x.shape(1), units, relu);
  }
  return y;
}

py::array_t<float> conv_relu_maxpool_infer_bf16(const py::handle& x_obj, const py::handle& w_obj,
                                                const py::handle& b_obj, long long kernel_h, long long kernel_w,
                                                long long filters, long long stride_h, long long stride_w,
                                                const std::string& padding) {
  auto x = f32(x_obj, "x", 4);
  expect_nonempty(x, "x");
  expect_positive(filters, "filters");
  const ConvShape s = conv_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), filters, kernel_h, kernel_w,
                                    stride_h, stride_w, padding, "kernel_h", "kernel_w");
  auto w = packed_bf16(w_obj, s.R * s.S * s.C, s.K);
  auto b = optional_f32(b_obj, "b", 1);
  if (b) expect_dim(*b, "b", 0, filters, "filters");
  if (s.P < 2 || s.Q < 2)
    value_error("x: expected a conv output of at least 2x2 for the 2x2 max pool, got " + std::to_string(s.P) + "x" +
                std::to_string(s.Q));
  auto y = empty_f32({s.N, s.P / 2, s.Q / 2, s.K});
  float* yp = y.mutable_data();
  const float *xp = x.data(), *bp = data_or_null(b);
  const uint16_t* wp = w.data();
  {
    py::gil_scoped_release release;
    conv2d_relu_maxpool_infer_bf16(yp, xp, wp, bp, s);
  }
  return y;
}

}  // namespace

void bind_infer(py::module_& m) {
  m.def("conv2d_relu_maxpool_infer", &conv_relu_maxpool_infer, py::arg("x"), py::arg("w"), py::arg("b").none(true),
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid",
        "x (N,H,W,C), w (R,S,C,K), b (K,) or None -> y (N,P//2,Q//2,K): the y of conv2d_relu_maxpool_forward "
        "without its argmax (inference).");
  m.def("bf16_kernel", &bf16_kernel_name,
        "The kernel bf16 inference runs on: 'avx512_bf16' (vdpbf16ps), 'avx2/fma' (bf16 weights widened to "
        "float32) or 'generic'.");
  m.def(
      "pack_bf16", [](py::handle w) { return pack_bf16_matrix(w, false); }, py::arg("w"),
        "w (K,M) float32 -> 1-D uint16: the weights rounded to bf16 (nearest even) in the packed layout the bf16 "
        "kernels read.");
  m.def("dense_forward_bf16", &dense_bf16, py::arg("x"), py::arg("w"), py::arg("b").none(true), py::arg("units"),
        py::arg("relu") = false,
        "x (N,K), w = pack_bf16(kernel (K,units)), b (units,) or None -> y (N,units): dense_forward with bf16 "
        "weights, float32 accumulation.");
  m.def("conv2d_relu_maxpool_infer_bf16", &conv_relu_maxpool_infer_bf16, py::arg("x"), py::arg("w"),
        py::arg("b").none(true), py::arg("kernel_h"), py::arg("kernel_w"), py::arg("filters"),
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid",
        "x (N,H,W,C), w = pack_bf16(kernel reshaped (R*S*C, filters)), b or None -> y (N,P//2,Q//2,filters): "
        "conv2d_relu_maxpool_infer with bf16 weights (and bf16 activations on AVX512_BF16).");
}

}  // namespace microcnn::bind
