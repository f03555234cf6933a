// Binding bodies that more than one binding file uses: the float32 conv kernels and their bf16-training twins
// take the same arguments, as do the two bf16 weight packings.
#pragma once
#include <string>

#include "common.hpp"
#include "microcnn/conv.hpp"

namespace microcnn::bind {

using ConvForwardFn = void (*)(float*, const float*, const float*, const float*, const ConvShape&, bool);
using ConvBackwardFn = void (*)(float*, float*, float*, const float*, const float*, const float*, const ConvShape&);

// x (N,H,W,C), w (R,S,C,K), b (K,) or None -> y (N,P,Q,K) through `kernel` (defined in core_conv.cpp).
py::array_t<float> conv_forward(ConvForwardFn kernel, const py::handle& x_obj, const py::handle& w_obj,
                                const py::handle& b_obj, long long stride_h, long long stride_w,
                                const std::string& padding, bool relu);

// -> (dx or None, dw, db or None) through `kernel` (defined in core_conv.cpp).
py::tuple conv_backward(ConvBackwardFn kernel, const py::handle& dy_obj, const py::handle& x_obj,
                        const py::handle& w_obj, long long stride_h, long long stride_w, const std::string& padding,
                        bool need_dx, bool need_db);

// w (K,M) float32 -> its packed bf16 panels; transposed: those of w^T (defined in infer.cpp).
py::array_t<uint16_t> pack_bf16_matrix(const py::handle& w_obj, bool transposed);

}  // namespace microcnn::bind
