// Softmax + categorical cross-entropy fused, from logits. Legend: N batch, M classes.
// Writes (overwrites) probs and dlogits; returns the loss.
//   lse_i = max_i + log(sum_j exp(x_ij - max_i)),  CE_i = sum_j t_ij * (lse_i - x_ij)
//   loss = sum_i w_i * CE_i / N  (Keras's sum-over-batch-size; w_i = 1 without sample weights)
//   dlogits_ij = w_i * (T_i * p_ij - t_ij) / N  with T_i = sum_j t_ij (= 1 for one-hot / probability rows),
// i.e. the exact gradient of the returned loss. The batch sum is done in double, in sample order.
#pragma once
#include <cstdint>

namespace microcnn {

// logits (N,M), labels (N) int32 in [0,M), sample_weight (N) or nullptr -> probs (N,M), dlogits (N,M), loss
double softmax_cross_entropy_sparse(float* probs, float* dlogits, const float* logits, const int32_t* labels,
                                    const float* sample_weight, int64_t N, int64_t M);

// logits (N,M), targets (N,M) one-hot or probabilities, sample_weight (N) or nullptr
//   -> probs (N,M), dlogits (N,M), loss
double softmax_cross_entropy_dense(float* probs, float* dlogits, const float* logits, const float* targets,
                                   const float* sample_weight, int64_t N, int64_t M);

}  // namespace microcnn
