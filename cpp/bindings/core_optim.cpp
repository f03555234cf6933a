// Bindings: in-place optimizer updates (dense_adam_update, the fused dense + Adam pass, is in core_dense.cpp).
#include "common.hpp"
#include "core_checks.hpp"
#include "microcnn/optim.hpp"

namespace microcnn::bind {

namespace {

void sgd(const py::handle& param_obj, const py::handle& grad_obj, const py::handle& velocity_obj,
         double learning_rate, double momentum, bool nesterov) {
  auto param = f32(param_obj, "param", -1, true);
  auto grad = f32(grad_obj, "grad", -1);
  expect_nonempty(param, "param");
  expect_shape(grad, "grad", shape_of(param), "param.shape");
  expect_finite(learning_rate, "learning_rate");
  expect_in_range(momentum, "momentum", 0.0, 1.0, true);
  auto velocity = optional_f32(velocity_obj, "velocity", -1, true);
  if (velocity) expect_shape(*velocity, "velocity", shape_of(param), "param.shape");
  if (momentum > 0.0 && !velocity)
    value_error("velocity: expected a float32 array like param when momentum > 0, got None");
  float* pp = param.mutable_data();
  float* vp = velocity ? velocity->mutable_data() : nullptr;
  const float* gp = grad.data();
  const int64_t n = param.size();
  py::gil_scoped_release release;
  sgd_update(pp, vp, gp, n, learning_rate, momentum, nesterov);
}

void adam(const py::handle& param_obj, const py::handle& grad_obj, const py::handle& m_obj,
          const py::handle& v_obj, double learning_rate, double beta_1, double beta_2, double epsilon,
          long long step) {
  auto param = f32(param_obj, "param", -1, true);
  auto grad = f32(grad_obj, "grad", -1);
  auto m = f32(m_obj, "m", -1, true);
  auto v = f32(v_obj, "v", -1, true);
  expect_nonempty(param, "param");
  const auto shape = shape_of(param);
  expect_shape(grad, "grad", shape, "param.shape");
  expect_shape(m, "m", shape, "param.shape");
  expect_shape(v, "v", shape, "param.shape");
  check_adam_hyperparameters(learning_rate, beta_1, beta_2, epsilon, step);
  float *pp = param.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
  const float* gp = grad.data();
  const int64_t n = param.size();
  py::gil_scoped_release release;
  adam_update(pp, mp, vp, gp, n, learning_rate, beta_1, beta_2, epsilon, step);
}

}  // namespace

void bind_core_optim(py::module_& m) {
  m.def("sgd_update", &sgd, py::arg("param"), py::arg("grad"), py::arg("velocity").none(true),
        py::arg("learning_rate"), py::arg("momentum") = 0.0, py::arg("nesterov") = false,
        "Keras SGD step in place (velocity required when momentum > 0).");
  m.def("adam_update", &adam, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("learning_rate"), py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999, py::arg("epsilon") = 1e-7,
        py::arg("step") = 1, "Keras Adam step in place (step t >= 1).");
}

}  // namespace microcnn::bind
