// Bindings: dense (fully connected) layer, and its kernel's fused gradient + Adam update.
#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/dense.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/optim.hpp"

namespace microcnn::bind {

namespace {

using DenseForwardFn = void (*)(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, bool);
using DenseBackwardFn = void (*)(float*, float*, float*, const float*, const float*, const float*, int64_t, int64_t,
                                 int64_t);

// The checked x (N,K) and w (K,M) of a dense layer.
struct DenseArgs {
  py::array_t<float> x, w;
  int64_t N, K, M;
  DenseArgs(const py::handle& x_obj, const py::handle& w_obj) : x(f32(x_obj, "x", 2)), w(f32(w_obj, "w", 2)) {
    expect_nonempty(x, "x");
    expect_nonempty(w, "w");
    expect_dim(w, "w", 0, x.shape(1), "in-features K = x.shape[1]");
    N = x.shape(0), K = x.shape(1), M = w.shape(1);
  }
};

py::array_t<float> dense_forward(DenseForwardFn kernel, const py::handle& x_obj, const py::handle& w_obj,
                                 const py::handle& b_obj, bool relu) {
  const DenseArgs a(x_obj, w_obj);
  auto b = optional_f32(b_obj, "b", 1);
  if (b) expect_dim(*b, "b", 0, a.M, "units M = w.shape[1]");
  auto y = empty_f32({a.N, a.M});
  float* yp = y.mutable_data();
  const float *xp = a.x.data(), *wp = a.w.data(), *bp = data_or_null(b);
  {
    py::gil_scoped_release release;
    kernel(yp, xp, wp, bp, a.N, a.K, a.M, relu);
  }
  return y;
}

py::tuple dense_backward(DenseBackwardFn kernel, const py::handle& dy_obj, const py::handle& x_obj,
                         const py::handle& w_obj, bool need_dx, bool need_db, bool need_dw) {
  auto dy = f32(dy_obj, "dy", 2);
  const DenseArgs a(x_obj, w_obj);
  expect_shape(dy, "dy", {a.N, a.M}, "(N, M) from x and w");
  float *dxp, *dwp, *dbp;
  py::object dx = optional_output(need_dx, {a.N, a.K}, dxp);
  py::object dw = optional_output(need_dw, {a.K, a.M}, dwp);
  py::object db = optional_output(need_db, {a.M}, dbp);
  const float *dyp = dy.data(), *xp = a.x.data(), *wp = a.w.data();
  {
    py::gil_scoped_release release;
    kernel(dxp, dwp, dbp, dyp, xp, wp, a.N, a.K, a.M);
  }
  return py::make_tuple(dx, dw, db);
}

void def_dense(py::module_& m, DenseForwardFn forward, DenseBackwardFn backward) {
  m.def(
      "dense_forward",
      [forward](py::handle x, py::handle w, py::handle b, bool relu) { return dense_forward(forward, x, w, b, relu); },
      py::arg("x"), py::arg("w"), py::arg("b").none(true), py::arg("relu") = false,
      "x (N,K), w (K,M), b (M,) or None -> y (N,M).");
  m.def(
      "dense_backward",
      [backward](py::handle dy, py::handle x, py::handle w, bool need_dx, bool need_db, bool need_dw) {
        return dense_backward(backward, dy, x, w, need_dx, need_db, need_dw);
      },
      py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("need_dx") = true, py::arg("need_db") = true,
      py::arg("need_dw") = true,
      "dy (N,M), x (N,K), w (K,M) -> (dx (N,K) or None, dw (K,M) or None, db (M,) or None).");
}

void dense_adam(const py::handle& param_obj, const py::handle& x_obj, const py::handle& dy_obj,
                const py::handle& m_obj, const py::handle& v_obj, double learning_rate, double beta_1, double beta_2,
                double epsilon, long long step) {
  auto param = f32(param_obj, "param", 2, true);
  auto x = f32(x_obj, "x", 2);
  auto dy = f32(dy_obj, "dy", 2);
  auto m = f32(m_obj, "m", 2, true);
  auto v = f32(v_obj, "v", 2, true);
  expect_nonempty(param, "param");
  expect_nonempty(x, "x");
  const int64_t N = x.shape(0), K = param.shape(0), M = param.shape(1);
  expect_dim(x, "x", 1, K, "in-features K = param.shape[0]");
  expect_shape(dy, "dy", {N, M}, "(N, M) from x and param");
  const auto shape = shape_of(param);
  expect_shape(m, "m", shape, "param.shape");
  expect_shape(v, "v", shape, "param.shape");
  check_adam_hyperparameters(learning_rate, beta_1, beta_2, epsilon, step);
  float *pp = param.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
  const float *xp = x.data(), *dyp = dy.data();
  py::gil_scoped_release release;
  dense_adam_update(pp, mp, vp, xp, dyp, N, K, M, learning_rate, beta_1, beta_2, epsilon, step);
}

}  // namespace

void bind_core_dense(py::module_& m, py::module_& reference) {
  def_dense(m, &microcnn::dense_forward, &microcnn::dense_backward);
  def_dense(reference, &microcnn::reference::dense_forward, &microcnn::reference::dense_backward);
  m.def("dense_adam_update", &dense_adam, py::arg("param"), py::arg("x"), py::arg("dy"), py::arg("m"), py::arg("v"),
        py::arg("learning_rate"), py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999, py::arg("epsilon") = 1e-7,
        py::arg("step") = 1,
        "Keras Adam step in place on a dense kernel with the gradient x^T dy, computed block by block.");
  // Kernels with more weights than this get the blocked one-pass update (and the Python layer keeps their
  // gradient factored for it); at or below it the GEMM may split the sum over the batch across threads.
  m.attr("GEMM_SPLIT_SUM_MAX_OUTPUT") = static_cast<long long>(kGemmSplitSumMaxOutput);
}

}  // namespace microcnn::bind
