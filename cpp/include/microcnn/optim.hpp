// Optimizer updates, in place, element-wise (Keras 3 formulas, float32 arithmetic like Keras).
// Legend: n element count of one parameter tensor. All arrays are updated in place.
#pragma once
#include <cstdint>

namespace microcnn {

// param (n), grad (n), velocity (n) or nullptr (only when momentum == 0) -> param, velocity updated.
// momentum 0: param -= lr*g. Otherwise v = momentum*v - lr*g; param += v, or (nesterov) param += momentum*v - lr*g.
void sgd_update(float* param, float* velocity, const float* grad, int64_t n, double learning_rate,
                double momentum, bool nesterov);

// param (n), m (n), v (n), grad (n) -> param, m, v updated. step t >= 1:
// alpha = lr*sqrt(1-b2^t)/(1-b1^t) (in double, then float); m += (g-m)*(1-b1); v += (g*g-v)*(1-b2);
// param -= (m*alpha)/(sqrt(v)+epsilon).
void adam_update(float* param, float* m, float* v, const float* grad, int64_t n, double learning_rate,
                 double beta_1, double beta_2, double epsilon, int64_t step);

// The float constants of one Adam step t (alpha as above).
struct AdamStep {
  float alpha, one_minus_b1, one_minus_b2, epsilon;
};
AdamStep adam_step(double learning_rate, double beta_1, double beta_2, double epsilon, int64_t step);
// param (n), m (n), v (n), grad (n): the element loop of adam_update, in the calling thread (no parallel region,
// the caller's denormal mode). Fused kernels call it so that their updates match adam_update bit for bit.
void adam_apply(float* param, float* m, float* v, const float* grad, int64_t n, const AdamStep& s);

}  // namespace microcnn
