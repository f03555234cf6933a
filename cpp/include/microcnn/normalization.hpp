// Batch normalization and global average pooling.
//
// Legend: M rows = product of all axes but the last (N*H*W for an NHWC batch, N for (N,C)), C channels,
// N batch, HW = H*W spatial positions. Arrays are float32, C-contiguous; x (..., C) is addressed as (M, C).
//
// Per-channel statistics are summed in double over fixed row chunks whose size depends only on (M, C), and the
// chunk partials are added in chunk order: results are bit-identical for any thread count.
// Every function overwrites its outputs (nothing accumulates into caller buffers).
#pragma once
#include <cstdint>

namespace microcnn {

// x (M,C), gamma (C), beta (C) -> y (M,C), mean (C), var (C) (biased: sum((x-mean)^2) / M)
void batchnorm_forward_train(float* y, float* mean, float* var, const float* x, const float* gamma,
                             const float* beta, int64_t M, int64_t C, float epsilon);

// x (M,C), gamma beta moving_mean moving_var (C) -> y (M,C)
void batchnorm_forward_infer(float* y, const float* x, const float* gamma, const float* beta,
                             const float* moving_mean, const float* moving_var, int64_t M, int64_t C,
                             float epsilon);

// dy (M,C), x (M,C), gamma mean var (C) -> dx (M,C), dgamma (C), dbeta (C)
// mean and var are the batch statistics batchnorm_forward_train returned for x.
void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* gamma, const float* mean, const float* var, int64_t M, int64_t C,
                        float epsilon);

// x (N,HW,C) -> y (N,C)
void global_avgpool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C);

// dy (N,C) -> dx (N,HW,C) = dy / HW broadcast over HW
void global_avgpool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C);

}  // namespace microcnn
