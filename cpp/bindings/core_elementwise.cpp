// Bindings: activations, fused softmax cross-entropy, dropout.
#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/activations.hpp"
#include "microcnn/dropout.hpp"
#include "microcnn/loss.hpp"

namespace microcnn::bind {

namespace {

py::array_t<float> like(const py::array& a) { return empty_f32(shape_of(a)); }

py::array_t<float> relu_fwd(const py::handle& x_obj) {
  auto x = f32(x_obj, "x", -1);
  expect_nonempty(x, "x");
  auto y = like(x);
  float* yp = y.mutable_data();
  const float* xp = x.data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    relu_forward(yp, xp, n);
  }
  return y;
}

py::array_t<float> relu_bwd(const py::handle& dy_obj, const py::handle& y_obj) {
  auto dy = f32(dy_obj, "dy", -1);
  auto y = f32(y_obj, "y", -1);
  expect_nonempty(y, "y");
  expect_shape(dy, "dy", shape_of(y), "y.shape");
  auto dx = like(y);
  float* dxp = dx.mutable_data();
  const float *dyp = dy.data(), *yp = y.data();
  const int64_t n = y.size();
  {
    py::gil_scoped_release release;
    relu_backward(dxp, dyp, yp, n);
  }
  return dx;
}

py::array_t<float> softmax_fwd(const py::handle& x_obj) {
  auto x = f32(x_obj, "x", 2);
  expect_nonempty(x, "x");
  auto y = like(x);
  float* yp = y.mutable_data();
  const float* xp = x.data();
  const int64_t N = x.shape(0), M = x.shape(1);
  {
    py::gil_scoped_release release;
    softmax_forward(yp, xp, N, M);
  }
  return y;
}

py::array_t<float> softmax_bwd(const py::handle& dy_obj, const py::handle& y_obj) {
  auto dy = f32(dy_obj, "dy", 2);
  auto y = f32(y_obj, "y", 2);
  expect_nonempty(y, "y");
  expect_shape(dy, "dy", shape_of(y), "y.shape");
  auto dx = like(y);
  float* dxp = dx.mutable_data();
  const float *dyp = dy.data(), *yp = y.data();
  const int64_t N = y.shape(0), M = y.shape(1);
  {
    py::gil_scoped_release release;
    softmax_backward(dxp, dyp, yp, N, M);
  }
  return dx;
}

py::tuple cross_entropy(const py::handle& logits_obj, const py::handle& labels_obj,
                        const py::handle& weight_obj) {
  auto logits = f32(logits_obj, "logits", 2);
  expect_nonempty(logits, "logits");
  const int64_t N = logits.shape(0), M = logits.shape(1);
  auto weight = optional_f32(weight_obj, "sample_weight", 1);
  if (weight) expect_shape(*weight, "sample_weight", {N}, "(N,) from logits");
  if (!py::isinstance<py::array>(labels_obj))
    type_error("labels: expected a numpy array, got " +
               py::str(py::type::of(labels_obj).attr("__name__")).cast<std::string>());
  const auto labels_dtype = py::reinterpret_borrow<py::array>(labels_obj).dtype();
  const bool sparse = labels_dtype.equal(py::dtype::of<int32_t>());
  if (!sparse && !labels_dtype.equal(py::dtype::of<float>()))
    type_error("labels: expected dtype int32 (class indices) or float32 (one-hot/probabilities), got " +
               py::str(labels_dtype).cast<std::string>());
  auto probs = like(logits), dlogits = like(logits);
  float *pp = probs.mutable_data(), *dp = dlogits.mutable_data();
  const float *xp = logits.data(), *wp = data_or_null(weight);
  double loss = 0.0;
  if (sparse) {
    auto labels = checked<int32_t>(labels_obj, "labels", 1);
    expect_shape(labels, "labels", {N}, "(N,) class indices for logits (N, M)");
    const int32_t* lp = labels.data();
    for (int64_t i = 0; i < N; ++i)
      if (lp[i] < 0 || lp[i] >= M)
        value_error("labels: expected class indices in [0, " + std::to_string(M) + "), got " +
                    std::to_string(lp[i]) + " at position " + std::to_string(i));
    py::gil_scoped_release release;
    loss = softmax_cross_entropy_sparse(pp, dp, xp, lp, wp, N, M);
  } else {
    auto labels = f32(labels_obj, "labels", 2);
    expect_shape(labels, "labels", {N, M}, "one-hot/probabilities like logits");
    const float* tp = labels.data();
    py::gil_scoped_release release;
    loss = softmax_cross_entropy_dense(pp, dp, xp, tp, wp, N, M);
  }
  return py::make_tuple(loss, probs, dlogits);
}

using DropoutFn = void (*)(float*, const float*, int64_t, double, uint64_t, uint64_t, uint64_t);

py::array_t<float> dropout(DropoutFn kernel, const char* name, const py::handle& x_obj, double rate,
                           const py::handle& seed_obj, const py::handle& step_obj,
                           const py::handle& offset_obj) {
  auto x = f32(x_obj, name, -1);
  expect_nonempty(x, name);
  expect_in_range(rate, "rate", 0.0, 1.0, false);
  const uint64_t seed = index_mod64(seed_obj, "seed"), step = index_mod64(step_obj, "step");
  const uint64_t offset = index_mod64(offset_obj, "offset");
  auto y = like(x);
  float* yp = y.mutable_data();
  const float* xp = x.data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    kernel(yp, xp, n, rate, seed, step, offset);
  }
  return y;
}

}  // namespace

void bind_core_elementwise(py::module_& m) {
  m.def("relu_forward", &relu_fwd, py::arg("x"), "max(0, x), any shape.");
  m.def("relu_backward", &relu_bwd, py::arg("dy"), py::arg("y"), "dy * (y > 0), any shape (y: ReLU output).");
  m.def("softmax_forward", &softmax_fwd, py::arg("x"), "x (N,M) -> softmax over the last axis.");
  m.def("softmax_backward", &softmax_bwd, py::arg("dy"), py::arg("y"),
        "dy (N,M), y softmax output (N,M) -> y * (dy - sum(dy*y, axis=1)).");
  m.def("softmax_cross_entropy", &cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("sample_weight") = py::none(),
        "logits (N,M); labels int32 (N,) or float32 (N,M); sample_weight (N,) or None -> (loss, probs, dlogits).");
  struct DropoutBinding {
    const char *name, *input, *doc;
    DropoutFn kernel;
  };
  for (const DropoutBinding& d :
       {DropoutBinding{"dropout_forward", "x",
                       "Inverted dropout with a counter-based mask of (seed, step, offset + index); 0 <= rate < 1.",
                       &microcnn::dropout_forward},
        DropoutBinding{"dropout_backward", "dy", "The forward mask (recomputed from seed, step) applied to dy.",
                       &microcnn::dropout_backward}})
    m.def(
        d.name,
        [d](py::handle x, double rate, py::handle seed, py::handle step, py::handle offset) {
          return dropout(d.kernel, d.input, x, rate, seed, step, offset);
        },
        py::arg(d.input), py::arg("rate"), py::arg("seed"), py::arg("step"), py::arg("offset") = 0, d.doc);
}

}  // namespace microcnn::bind
