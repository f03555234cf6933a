#include <cmath>
#include <limits>

#include "common.hpp"
#include "microcnn/normalization.hpp"

namespace microcnn::bind {
namespace {

struct RowsChannels {
  int64_t M;
  int64_t C;
};

// x (..., C), at least 2-D and non-empty, addressed as (M, C).
RowsChannels rows_channels(const py::array& x, const char* name) {
  if (x.ndim() < 2)
    value_error(std::string(name) + ": expected an array of at least 2 dimensions (..., C), got shape " +
                shape_str(x));
  expect_nonempty(x, name);
  const int64_t C = x.shape(x.ndim() - 1);
  return {static_cast<int64_t>(x.size()) / C, C};
}

py::array_t<float> channel_vector(const py::handle& obj, const char* name, int64_t C) {
  auto a = f32(obj, name, 1);
  expect_dim(a, name, 0, C, "x.shape[-1] (C)");
  return a;
}

py::array_t<float> same_shape(const py::handle& obj, const char* name, const py::array& x) {
  auto a = f32(obj, name, static_cast<int>(x.ndim()));
  for (py::ssize_t i = 0; i < x.ndim(); ++i)
    if (a.shape(i) != x.shape(i))
      value_error(std::string(name) + ": expected the shape of x " + shape_str(x) + ", got " + shape_str(a));
  return a;
}

void check_epsilon(double epsilon) {
  if (!(epsilon > 0.0) || !std::isfinite(epsilon))
    value_error("epsilon: expected a finite number > 0, got " + std::to_string(epsilon));
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// What batchnorm_forward_infer and batchnorm_backward both take: x (..., C) with gamma and a (mean, var) pair
// of (C,) vectors, and epsilon; checked, named as the Python arguments.
struct NormalizeArgs {
  py::array_t<float> x;
  int64_t M, C;
  py::array_t<float> gamma, mean, var;
  float epsilon;
};

NormalizeArgs normalize_args(const py::handle& x_obj, const py::handle& gamma_obj, const py::handle& mean_obj,
                             const char* mean_name, const py::handle& var_obj, const char* var_name,
                             double epsilon) {
  auto x = f32(x_obj, "x", -1);
  const auto [M, C] = rows_channels(x, "x");
  auto gamma = channel_vector(gamma_obj, "gamma", C);
  auto mean = channel_vector(mean_obj, mean_name, C);
  auto var = channel_vector(var_obj, var_name, C);
  check_epsilon(epsilon);
  return {x, M, C, gamma, mean, var, static_cast<float>(epsilon)};
}

// x_shape: a sequence of 4 positive ints (N, H, W, C) whose product is addressable.
std::vector<py::ssize_t> nhwc_shape(const py::handle& obj) {
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    type_error("x_shape: expected a tuple of 4 ints (N, H, W, C), got " +
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  auto seq = py::reinterpret_borrow<py::sequence>(obj);
  if (seq.size() != 4)
    value_error("x_shape: expected 4 ints (N, H, W, C), got " + std::to_string(seq.size()) + " items");
  std::vector<py::ssize_t> shape;
  double total = 1.0;
  for (auto item : seq) {
    if (!py::isinstance<py::int_>(item))
      type_error("x_shape: expected ints, got " + py::str(py::type::of(item).attr("__name__")).cast<std::string>());
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(item.ptr(), &overflow);
    if (overflow) value_error("x_shape: expected sizes that fit in 64 bits, got " + py::str(item).cast<std::string>());
    expect_positive(v, "x_shape item");
    shape.push_back(static_cast<py::ssize_t>(v));
    total *= static_cast<double>(v);
  }
  if (total > static_cast<double>(std::numeric_limits<int64_t>::max() / 8))
    value_error("x_shape: too many elements");
  return shape;
}

}  // namespace

void bind_normalization(py::module_& m) {
  m.def(
      "batchnorm_forward_train",
      [](py::handle x_obj, py::handle gamma_obj, py::handle beta_obj, double epsilon) {
        auto x = f32(x_obj, "x", -1);
        const auto [M, C] = rows_channels(x, "x");
        auto gamma = channel_vector(gamma_obj, "gamma", C);
        auto beta = channel_vector(beta_obj, "beta", C);
        check_epsilon(epsilon);
        auto y = empty_f32(shape_of(x));
        auto mean = empty_f32({C});
        auto var = empty_f32({C});
        float *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pv = var.mutable_data();
        const float *px = x.data(), *pg = gamma.data(), *pb = beta.data();
        {
          py::gil_scoped_release release;
          batchnorm_forward_train(py_, pm, pv, px, pg, pb, M, C, static_cast<float>(epsilon));
        }
        return py::make_tuple(y, mean, var);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("epsilon"),
      "x (..., C) -> (y, batch_mean (C,), batch_var (C,)), statistics over all axes but the last; biased var.");

  m.def(
      "batchnorm_forward_infer",
      [](py::handle x_obj, py::handle gamma_obj, py::handle beta_obj, py::handle mean_obj, py::handle var_obj,
         double epsilon) {
        const NormalizeArgs a =
            normalize_args(x_obj, gamma_obj, mean_obj, "moving_mean", var_obj, "moving_var", epsilon);
        auto beta = channel_vector(beta_obj, "beta", a.C);
        auto y = empty_f32(shape_of(a.x));
        float* py_ = y.mutable_data();
        const float *px = a.x.data(), *pg = a.gamma.data(), *pb = beta.data(), *pm = a.mean.data();
        const float* pv = a.var.data();
        {
          py::gil_scoped_release release;
          batchnorm_forward_infer(py_, px, pg, pb, pm, pv, a.M, a.C, a.epsilon);
        }
        return y;
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
      py::arg("epsilon"), "x (..., C) -> y normalised with the moving statistics.");

  m.def(
      "batchnorm_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle gamma_obj, py::handle mean_obj, py::handle var_obj,
         double epsilon) {
        const NormalizeArgs a =
            normalize_args(x_obj, gamma_obj, mean_obj, "batch_mean", var_obj, "batch_var", epsilon);
        auto dy = same_shape(dy_obj, "dy", a.x);
        auto dx = empty_f32(shape_of(a.x));
        auto dgamma = empty_f32({a.C});
        auto dbeta = empty_f32({a.C});
        float *pdx = dx.mutable_data(), *pdg = dgamma.mutable_data(), *pdb = dbeta.mutable_data();
        const float *pdy = dy.data(), *px = a.x.data(), *pg = a.gamma.data(), *pm = a.mean.data();
        const float* pv = a.var.data();
        {
          py::gil_scoped_release release;
          batchnorm_backward(pdx, pdg, pdb, pdy, px, pg, pm, pv, a.M, a.C, a.epsilon);
        }
        return py::make_tuple(dx, dgamma, dbeta);
      },
      py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("batch_mean"), py::arg("batch_var"),
      py::arg("epsilon"), "-> (dx like x, dgamma (C,), dbeta (C,)).");

  m.def(
      "global_avgpool_forward",
      [](py::handle x_obj) {
        auto x = f32(x_obj, "x", 4);
        expect_nonempty(x, "x");
        const int64_t N = x.shape(0), HW = x.shape(1) * x.shape(2), C = x.shape(3);
        auto y = empty_f32({N, C});
        float* py_ = y.mutable_data();
        const float* px = x.data();
        {
          py::gil_scoped_release release;
          global_avgpool_forward(py_, px, N, HW, C);
        }
        return y;
      },
      py::arg("x"), "x (N,H,W,C) -> (N,C): mean over H and W.");

  m.def(
      "global_avgpool_backward",
      [](py::handle dy_obj, py::handle x_shape_obj) {
        auto dy = f32(dy_obj, "dy", 2);
        const auto shape = nhwc_shape(x_shape_obj);
        expect_dim(dy, "dy", 0, shape[0], "x_shape[0] (N)");
        expect_dim(dy, "dy", 1, shape[3], "x_shape[3] (C)");
        const int64_t N = shape[0], HW = shape[1] * shape[2], C = shape[3];
        auto dx = empty_f32(shape);
        float* pdx = dx.mutable_data();
        const float* pdy = dy.data();
        {
          py::gil_scoped_release release;
          global_avgpool_backward(pdx, pdy, N, HW, C);
        }
        return dx;
      },
      py::arg("dy"), py::arg("x_shape"), "dy (N,C) -> dx of x_shape (N,H,W,C), dy / (H*W) at every position.");
}

}  // namespace microcnn::bind
