// Bindings: inference-only kernels (infer.hpp).
#include <optional>
#include <string>

#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/bf16.hpp"
#include "microcnn/dense.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/infer.hpp"
#include "shared.hpp"

namespace microcnn::bind {

namespace {

bool overlaps(const py::array& a, const py::array& b) {
  const auto* a0 = static_cast<const char*>(a.data());
  const auto* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// `out` (None: a fresh array) as the float32 C-contiguous writeable array of `shape` the kernel writes, not
// overlapping the input x.
py::array_t<float> output(const py::handle& out_obj, const std::vector<py::ssize_t>& shape, const py::array& x) {
  if (out_obj.is_none()) return empty_f32(shape);
  auto out = f32(out_obj, "out", static_cast<int>(shape.size()), true);
  expect_shape(out, "out", shape, "the output's shape");
  if (overlaps(out, x)) value_error("out: expected an array that does not overlap x");
  return out;
}

py::array_t<float> conv_relu_maxpool_infer(const py::handle& x_obj, const py::handle& w_obj,
                                           const py::handle& b_obj, long long stride_h, long long stride_w,
                                           const std::string& padding, const py::handle& out_obj) {
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
  auto y = output(out_obj, {s.N, s.P / 2, s.Q / 2, s.K}, x);
  float* yp = y.mutable_data();
  const float *xp = x.data(), *wp = w.data(), *bp = data_or_null(b);
  {
    py::gil_scoped_release release;
    conv2d_relu_maxpool_infer(yp, xp, wp, bp, s);
  }
  return y;
}

py::array_t<float> pack_dense(const py::handle& w_obj) {
  auto w = f32(w_obj, "w", 2);
  expect_nonempty(w, "w");
  auto out = empty_f32({static_cast<py::ssize_t>(dense_packed_size(w.shape(0), w.shape(1)))});
  float* op = out.mutable_data();
  const float* wp = w.data();
  {
    py::gil_scoped_release release;
    dense_pack_weights(op, wp, w.shape(0), w.shape(1));
  }
  return out;
}

py::array_t<float> dense_infer(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj, bool relu,
                               const py::handle& packed_obj, int packed_nr, const py::handle& out_obj) {
  auto x = f32(x_obj, "x", 2);
  auto w = f32(w_obj, "w", 2);
  expect_nonempty(x, "x");
  expect_nonempty(w, "w");
  expect_dim(w, "w", 0, x.shape(1), "in-features K = x.shape[1]");
  const int64_t N = x.shape(0), K = x.shape(1), M = w.shape(1);
  auto b = optional_f32(b_obj, "b", 1);
  if (b) expect_dim(*b, "b", 0, M, "units M = w.shape[1]");
  const float* pp = nullptr;
  std::optional<py::array_t<float>> packed;
  if (!packed_obj.is_none()) {
    packed = f32(packed_obj, "packed", 1);
    if (packed_nr < 1 || packed->shape(0) != packed_panels_size(K, M, packed_nr))
      value_error("packed: expected pack_dense(w) of a (" + std::to_string(K) + ", " + std::to_string(M) +
                  ") matrix and its dense_packed_nr(), got " + std::to_string(packed->shape(0)) +
                  " values for nr=" + std::to_string(packed_nr));
    pp = packed->data();
  }
  auto y = output(out_obj, {N, M}, x);
  float* yp = y.mutable_data();
  const float *xp = x.data(), *wp = w.data(), *bp = data_or_null(b);
  {
    py::gil_scoped_release release;
    if (pp)
      dense_forward_packed(yp, xp, wp, pp, packed_nr, bp, N, K, M, relu);
    else
      dense_forward(yp, xp, wp, bp, N, K, M, relu);
  }
  return y;
}

py::array_t<float> channel_stats_of(const py::handle& maps_obj) {
  auto maps = f32(maps_obj, "maps", -1);
  if (maps.ndim() < 2) value_error("maps: expected (N, ..., C) feature maps, got shape " + shape_str(maps));
  expect_nonempty(maps, "maps");
  const int64_t N = maps.shape(0), C = maps.shape(maps.ndim() - 1), P = maps.size() / (N * C);
  auto out = empty_f32({N, 2 * C});
  float* op = out.mutable_data();
  const float* mp = maps.data();
  {
    py::gil_scoped_release release;
    channel_stats(op, mp, N, P, C);
  }
  return out;
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
        py::arg("stride_h") = 1, py::arg("stride_w") = 1, py::arg("padding") = "valid", py::arg("out") = py::none(),
        "x (N,H,W,C), w (R,S,C,K), b (K,) or None -> y (N,P//2,Q//2,K): the y of conv2d_relu_maxpool_forward "
        "without its argmax (inference); written into out when given (float32, that shape, not overlapping x).");
  m.def("channel_stats", &channel_stats_of, py::arg("maps"),
        "maps (N, ..., C) float32 -> (N, 2C): per sample and channel the mean over the other axes, then the "
        "standard deviation (sums in double).");
  m.def("dense_packed_nr", &dense_packed_nr,
        "The micro-panel width pack_dense packs for: that of the micro-kernel in use.");
  m.def("pack_dense", &pack_dense, py::arg("w"),
        "w (K,M) float32 -> 1-D float32: w packed once into the GEMM's micro-panels of dense_packed_nr() columns, "
        "for dense_forward_infer.");
  m.def("dense_forward_infer", &dense_infer, py::arg("x"), py::arg("w"), py::arg("b").none(true),
        py::arg("relu") = false, py::arg("packed") = py::none(), py::arg("packed_nr") = 0,
        py::arg("out") = py::none(),
        "x (N,K), w (K,M), b (M,) or None -> y (N,M): dense_forward's values; with packed = pack_dense(w) made "
        "for packed_nr = dense_packed_nr(), batches of more than 4 rows read that copy. Written into out when "
        "given (float32 (N,M), not overlapping x).");
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
