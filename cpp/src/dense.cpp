// Production dense layer. For now it forwards to the naive reference; the packed SGEMM will replace these
// bodies without changing the signatures.
#include "microcnn/dense.hpp"

namespace microcnn {

// x (N,K), w (K,M), b (M) or nullptr -> y (N,M)
void dense_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                   bool relu) {
  reference::dense_forward(y, x, w, b, N, K, M, relu);
}

// dy (N,M), x (N,K), w (K,M) -> dx (N,K) or nullptr, dw (K,M), db (M) or nullptr
void dense_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t N,
                    int64_t K, int64_t M) {
  reference::dense_backward(dx, dw, db, dy, x, w, N, K, M);
}

}  // namespace microcnn
