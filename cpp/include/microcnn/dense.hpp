// Fully connected layer. Legend: N batch, K in-features, M out-features (units). Weights (K,M), Keras layout.
// Backward OVERWRITES its outputs (dx, dw, db).
#pragma once
#include <cstdint>

namespace microcnn {

// x (N,K), w (K,M), b (M) or nullptr -> y (N,M); relu: y = max(0, x w + b)
void dense_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                   bool relu);
// dy (N,M), x (N,K), w (K,M) -> dx (N,K) or nullptr, dw (K,M) or nullptr, db (M) or nullptr (dw, db summed
// over batch)
void dense_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t N,
                    int64_t K, int64_t M);
// x (N,K), dy (N,M) -> w (K,M), m (K,M), v (K,M) updated in place by one Keras Adam step (adam_update, optim.hpp)
// with the weight gradient dw = x^T dy of dense_backward, both bit for bit, without materialising dw: each
// thread computes dw for a block of rows into a small buffer and updates that block (one pass over w, m, v
// instead of writing dw and reading it back).
void dense_adam_update(float* w, float* m, float* v, const float* x, const float* dy, int64_t N, int64_t K,
                       int64_t M, double learning_rate, double beta_1, double beta_2, double epsilon, int64_t step);

// Naive loops: the oracle the production kernels are tested against. Same contracts as above.
namespace reference {
// x (N,K), w (K,M), b (M) or nullptr -> y (N,M)
void dense_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                   bool relu);
// dy (N,M), x (N,K), w (K,M) -> dx (N,K) or nullptr, dw (K,M) or nullptr, db (M) or nullptr
void dense_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t N,
                    int64_t K, int64_t M);
}  // namespace reference

}  // namespace microcnn
