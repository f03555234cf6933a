"""Every documented bad input of the core kernels raises the documented exception, with a message that names
the argument (and says what was expected and what was received); nothing crashes the interpreter."""

import numpy as np
import pytest

from microcnn import _core


def f32(*shape):
    return np.ones(shape, np.float32)


X, W, B = f32(2, 5, 5, 3), f32(3, 3, 3, 4), f32(4)
DY = f32(2, 3, 3, 4)  # conv output for X, W, valid
XD, WD, BD, DYD = f32(2, 6), f32(6, 4), f32(4), f32(2, 4)
LOGITS, LABELS = f32(3, 4), np.array([0, 3, 1], np.int32)
ARGMAX = np.zeros((2, 2, 2, 3), np.int32)


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def noncontiguous(a):
    return np.repeat(a, 2, axis=-1)[..., ::2]


def fortran(a):
    return np.asfortranarray(a)


# (id, callable, exception type, argument named at the start of the message)
CASES = [
    # --- conv2d_forward
    ("conv_x_float64", lambda: _core.conv2d_forward(X.astype(np.float64), W, B), TypeError, "x"),
    ("conv_x_list", lambda: _core.conv2d_forward(X.tolist(), W, B), TypeError, "x"),
    ("conv_w_int32", lambda: _core.conv2d_forward(X, W.astype(np.int32), B), TypeError, "w"),
    ("conv_b_float64", lambda: _core.conv2d_forward(X, W, B.astype(np.float64)), TypeError, "b"),
    ("conv_x_3d", lambda: _core.conv2d_forward(X[0], W, B), ValueError, "x"),
    ("conv_w_3d", lambda: _core.conv2d_forward(X, W[0], B), ValueError, "w"),
    ("conv_b_2d", lambda: _core.conv2d_forward(X, W, B[None]), ValueError, "b"),
    ("conv_channels", lambda: _core.conv2d_forward(X, f32(3, 3, 2, 4), B), ValueError, "w"),
    ("conv_bias_size", lambda: _core.conv2d_forward(X, W, f32(5)), ValueError, "b"),
    ("conv_x_noncontig", lambda: _core.conv2d_forward(noncontiguous(X), W, B), ValueError, "x"),
    ("conv_x_fortran", lambda: _core.conv2d_forward(fortran(X), W, B), ValueError, "x"),
    ("conv_w_noncontig", lambda: _core.conv2d_forward(X, noncontiguous(W), B), ValueError, "w"),
    ("conv_zero_batch", lambda: _core.conv2d_forward(f32(0, 5, 5, 3), W, B), ValueError, "x"),
    ("conv_zero_height", lambda: _core.conv2d_forward(f32(2, 0, 5, 3), W, B), ValueError, "x"),
    ("conv_zero_filters", lambda: _core.conv2d_forward(X, f32(3, 3, 3, 0), f32(0)), ValueError, "w"),
    ("conv_stride_h_0", lambda: _core.conv2d_forward(X, W, B, stride_h=0), ValueError, "stride_h"),
    ("conv_stride_w_neg", lambda: _core.conv2d_forward(X, W, B, stride_w=-1), ValueError, "stride_w"),
    ("conv_padding", lambda: _core.conv2d_forward(X, W, B, padding="full"), ValueError, "padding"),
    ("conv_padding_case", lambda: _core.conv2d_forward(X, W, B, padding="SAME"), ValueError, "padding"),
    ("conv_kernel_too_big", lambda: _core.conv2d_forward(f32(1, 2, 5, 3), W, B), ValueError, "w"),
    ("conv_kernel_too_wide", lambda: _core.conv2d_forward(f32(1, 5, 2, 3), W, None), ValueError, "w"),
    # --- conv2d_backward (fast and naive share the checks)
    ("convb_dy_shape", lambda: _core.conv2d_backward(f32(2, 5, 5, 4), X, W), ValueError, "dy"),
    ("convb_dy_same_shape", lambda: _core.conv2d_backward(DY, X, W, padding="same"), ValueError, "dy"),
    ("convb_dy_float64", lambda: _core.conv2d_backward(DY.astype(np.float64), X, W), TypeError, "dy"),
    ("convb_dy_noncontig", lambda: _core.conv2d_backward(noncontiguous(DY), X, W), ValueError, "dy"),
    ("convb_channels", lambda: _core.conv2d_backward(DY, X, f32(3, 3, 2, 4)), ValueError, "w"),
    ("convb_stride", lambda: _core.conv2d_backward(DY, X, W, stride_h=0), ValueError, "stride_h"),
    ("convb_zero_batch", lambda: _core.conv2d_backward(f32(0, 3, 3, 4), f32(0, 5, 5, 3), W), ValueError, "x"),
    (
        "ref_conv_x_float64",
        lambda: _core.reference.conv2d_forward(X.astype(np.float64), W, B),
        TypeError,
        "x",
    ),
    ("ref_convb_dy_shape", lambda: _core.reference.conv2d_backward(f32(2, 5, 5, 4), X, W), ValueError, "dy"),
    # --- conv2d_output_size
    ("size_zero", lambda: _core.conv2d_output_size(0, 3, 1, "same"), ValueError, "size"),
    ("size_kernel_zero", lambda: _core.conv2d_output_size(5, 0, 1, "same"), ValueError, "kernel"),
    ("size_stride_zero", lambda: _core.conv2d_output_size(5, 3, 0, "same"), ValueError, "stride"),
    ("size_kernel_too_big", lambda: _core.conv2d_output_size(2, 3, 1, "valid"), ValueError, "kernel"),
    ("size_padding", lambda: _core.conv2d_output_size(5, 3, 1, "causal"), ValueError, "padding"),
    # --- maxpool2d_forward
    ("pool_x_float64", lambda: _core.maxpool2d_forward(X.astype(np.float64), 2, 2, 2, 2), TypeError, "x"),
    ("pool_x_3d", lambda: _core.maxpool2d_forward(X[0], 2, 2, 2, 2), ValueError, "x"),
    ("pool_x_noncontig", lambda: _core.maxpool2d_forward(noncontiguous(X), 2, 2, 2, 2), ValueError, "x"),
    ("pool_zero_batch", lambda: _core.maxpool2d_forward(f32(0, 4, 4, 3), 2, 2, 2, 2), ValueError, "x"),
    ("pool_h_zero", lambda: _core.maxpool2d_forward(X, 0, 2, 2, 2), ValueError, "pool_h"),
    ("pool_w_neg", lambda: _core.maxpool2d_forward(X, 2, -2, 2, 2), ValueError, "pool_w"),
    ("pool_stride_h", lambda: _core.maxpool2d_forward(X, 2, 2, 0, 2), ValueError, "stride_h"),
    ("pool_stride_w", lambda: _core.maxpool2d_forward(X, 2, 2, 2, 0), ValueError, "stride_w"),
    ("pool_padding", lambda: _core.maxpool2d_forward(X, 2, 2, 2, 2, "reflect"), ValueError, "padding"),
    ("pool_too_big", lambda: _core.maxpool2d_forward(X, 6, 2, 1, 1, "valid"), ValueError, "pool_h"),
    # --- maxpool2d_backward
    (
        "poolb_argmax_float",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), f32(2, 2, 2, 3), X.shape),
        TypeError,
        "argmax",
    ),
    (
        "poolb_argmax_int64",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX.astype(np.int64), X.shape),
        TypeError,
        "argmax",
    ),
    (
        "poolb_dy_float64",
        lambda: _core.maxpool2d_backward(np.ones((2, 2, 2, 3)), ARGMAX, X.shape),
        TypeError,
        "dy",
    ),
    (
        "poolb_argmax_shape",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX[:, :1], X.shape),
        ValueError,
        "argmax",
    ),
    (
        "poolb_argmax_range",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX + 75, X.shape),
        ValueError,
        "argmax",
    ),
    (
        "poolb_argmax_negative",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX - 1, X.shape),
        ValueError,
        "argmax",
    ),
    (
        "poolb_xshape_len",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX, (2, 5, 5)),
        ValueError,
        "x_shape",
    ),
    (
        "poolb_xshape_zero",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX, (2, 0, 5, 3)),
        ValueError,
        "x_shape",
    ),
    (
        "poolb_xshape_batch",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX, (3, 5, 5, 3)),
        ValueError,
        "x_shape",
    ),
    (
        "poolb_xshape_channels",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX, (2, 5, 5, 4)),
        ValueError,
        "x_shape",
    ),
    (
        "poolb_xshape_huge",
        lambda: _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX, (2, 2**40, 2**40, 3)),
        ValueError,
        "x_shape",
    ),
    (
        "poolb_zero_batch",
        lambda: _core.maxpool2d_backward(f32(0, 2, 2, 3), ARGMAX[:0], (0, 5, 5, 3)),
        ValueError,
        "dy",
    ),
    # --- activations
    ("relu_float64", lambda: _core.relu_forward(np.ones(3)), TypeError, "x"),
    ("relu_empty", lambda: _core.relu_forward(f32(0, 3)), ValueError, "x"),
    ("relu_noncontig", lambda: _core.relu_forward(noncontiguous(f32(3, 4))), ValueError, "x"),
    ("relub_shape", lambda: _core.relu_backward(f32(3, 4), f32(4, 3)), ValueError, "dy"),
    ("relub_y_int", lambda: _core.relu_backward(f32(3), np.ones(3, np.int32)), TypeError, "y"),
    ("softmax_1d", lambda: _core.softmax_forward(f32(4)), ValueError, "x"),
    ("softmax_3d", lambda: _core.softmax_forward(f32(2, 3, 4)), ValueError, "x"),
    ("softmax_empty", lambda: _core.softmax_forward(f32(0, 4)), ValueError, "x"),
    ("softmax_no_classes", lambda: _core.softmax_forward(f32(4, 0)), ValueError, "x"),
    ("softmaxb_shape", lambda: _core.softmax_backward(f32(2, 3), f32(2, 4)), ValueError, "dy"),
    # --- loss
    ("ce_logits_float64", lambda: _core.softmax_cross_entropy(np.ones((3, 4)), LABELS), TypeError, "logits"),
    ("ce_logits_1d", lambda: _core.softmax_cross_entropy(f32(4), LABELS), ValueError, "logits"),
    ("ce_logits_empty", lambda: _core.softmax_cross_entropy(f32(0, 4), LABELS[:0]), ValueError, "logits"),
    (
        "ce_labels_int64",
        lambda: _core.softmax_cross_entropy(LOGITS, LABELS.astype(np.int64)),
        TypeError,
        "labels",
    ),
    ("ce_labels_float64", lambda: _core.softmax_cross_entropy(LOGITS, np.eye(4)[:3]), TypeError, "labels"),
    ("ce_labels_list", lambda: _core.softmax_cross_entropy(LOGITS, [0, 1, 2]), TypeError, "labels"),
    (
        "ce_label_too_big",
        lambda: _core.softmax_cross_entropy(LOGITS, np.array([0, 4, 1], np.int32)),
        ValueError,
        "labels",
    ),
    (
        "ce_label_negative",
        lambda: _core.softmax_cross_entropy(LOGITS, np.array([0, -1, 1], np.int32)),
        ValueError,
        "labels",
    ),
    ("ce_labels_length", lambda: _core.softmax_cross_entropy(LOGITS, LABELS[:2]), ValueError, "labels"),
    ("ce_labels_2d_int", lambda: _core.softmax_cross_entropy(LOGITS, LABELS[:, None]), ValueError, "labels"),
    ("ce_onehot_shape", lambda: _core.softmax_cross_entropy(LOGITS, f32(3, 5)), ValueError, "labels"),
    (
        "ce_onehot_noncontig",
        lambda: _core.softmax_cross_entropy(LOGITS, noncontiguous(f32(3, 4))),
        ValueError,
        "labels",
    ),
    (
        "ce_weight_shape",
        lambda: _core.softmax_cross_entropy(LOGITS, LABELS, f32(4)),
        ValueError,
        "sample_weight",
    ),
    (
        "ce_weight_float64",
        lambda: _core.softmax_cross_entropy(LOGITS, LABELS, np.ones(3)),
        TypeError,
        "sample_weight",
    ),
    # --- dense
    ("dense_x_1d", lambda: _core.dense_forward(f32(6), WD, BD), ValueError, "x"),
    ("dense_x_float64", lambda: _core.dense_forward(np.ones((2, 6)), WD, BD), TypeError, "x"),
    ("dense_w_shape", lambda: _core.dense_forward(XD, f32(5, 4), BD), ValueError, "w"),
    ("dense_b_size", lambda: _core.dense_forward(XD, WD, f32(3)), ValueError, "b"),
    ("dense_zero_batch", lambda: _core.dense_forward(f32(0, 6), WD, BD), ValueError, "x"),
    ("dense_zero_units", lambda: _core.dense_forward(XD, f32(6, 0), None), ValueError, "w"),
    ("dense_x_noncontig", lambda: _core.dense_forward(noncontiguous(XD), WD, BD), ValueError, "x"),
    ("denseb_dy_shape", lambda: _core.dense_backward(f32(2, 5), XD, WD), ValueError, "dy"),
    ("denseb_w_int", lambda: _core.dense_backward(DYD, XD, WD.astype(np.int32)), TypeError, "w"),
    ("ref_dense_w_shape", lambda: _core.reference.dense_forward(XD, f32(5, 4), BD), ValueError, "w"),
    ("ref_denseb_dy_shape", lambda: _core.reference.dense_backward(f32(2, 5), XD, WD), ValueError, "dy"),
    # --- dropout
    ("dropout_rate_one", lambda: _core.dropout_forward(XD, 1.0, 0, 0), ValueError, "rate"),
    ("dropout_rate_negative", lambda: _core.dropout_forward(XD, -0.1, 0, 0), ValueError, "rate"),
    ("dropout_rate_nan", lambda: _core.dropout_forward(XD, float("nan"), 0, 0), ValueError, "rate"),
    ("dropout_seed_float", lambda: _core.dropout_forward(XD, 0.5, 1.5, 0), TypeError, "seed"),
    ("dropout_step_float", lambda: _core.dropout_backward(XD, 0.5, 1, 2.0), TypeError, "step"),
    ("dropout_x_float64", lambda: _core.dropout_forward(np.ones(3), 0.5, 0, 0), TypeError, "x"),
    ("dropout_empty", lambda: _core.dropout_forward(f32(0), 0.5, 0, 0), ValueError, "x"),
    ("dropoutb_dy_noncontig", lambda: _core.dropout_backward(noncontiguous(XD), 0.5, 0, 0), ValueError, "dy"),
    # --- sgd_update
    ("sgd_param_readonly", lambda: _core.sgd_update(readonly(XD), XD, None, 0.1), ValueError, "param"),
    ("sgd_param_float64", lambda: _core.sgd_update(np.ones(3), f32(3), None, 0.1), TypeError, "param"),
    (
        "sgd_param_noncontig",
        lambda: _core.sgd_update(noncontiguous(f32(3, 4)), f32(3, 4), None, 0.1),
        ValueError,
        "param",
    ),
    ("sgd_param_empty", lambda: _core.sgd_update(f32(0), f32(0), None, 0.1), ValueError, "param"),
    ("sgd_grad_shape", lambda: _core.sgd_update(f32(2, 6), f32(6, 2), None, 0.1), ValueError, "grad"),
    ("sgd_grad_float64", lambda: _core.sgd_update(f32(3), np.ones(3), None, 0.1), TypeError, "grad"),
    (
        "sgd_no_velocity",
        lambda: _core.sgd_update(f32(3), f32(3), None, 0.1, momentum=0.9),
        ValueError,
        "velocity",
    ),
    (
        "sgd_velocity_readonly",
        lambda: _core.sgd_update(f32(3), f32(3), readonly(f32(3)), 0.1, 0.9),
        ValueError,
        "velocity",
    ),
    (
        "sgd_velocity_shape",
        lambda: _core.sgd_update(f32(3), f32(3), f32(4), 0.1, 0.9),
        ValueError,
        "velocity",
    ),
    ("sgd_lr_nan", lambda: _core.sgd_update(f32(3), f32(3), None, float("nan")), ValueError, "learning_rate"),
    ("sgd_lr_inf", lambda: _core.sgd_update(f32(3), f32(3), None, float("inf")), ValueError, "learning_rate"),
    (
        "sgd_momentum",
        lambda: _core.sgd_update(f32(3), f32(3), f32(3), 0.1, momentum=1.5),
        ValueError,
        "momentum",
    ),
    # --- adam_update
    (
        "adam_param_readonly",
        lambda: _core.adam_update(readonly(f32(3)), f32(3), f32(3), f32(3), 1e-3),
        ValueError,
        "param",
    ),
    (
        "adam_m_readonly",
        lambda: _core.adam_update(f32(3), f32(3), readonly(f32(3)), f32(3), 1e-3),
        ValueError,
        "m",
    ),
    (
        "adam_v_readonly",
        lambda: _core.adam_update(f32(3), f32(3), f32(3), readonly(f32(3)), 1e-3),
        ValueError,
        "v",
    ),
    ("adam_v_shape", lambda: _core.adam_update(f32(3), f32(3), f32(3), f32(4), 1e-3), ValueError, "v"),
    (
        "adam_grad_shape",
        lambda: _core.adam_update(f32(3), f32(1, 3), f32(3), f32(3), 1e-3),
        ValueError,
        "grad",
    ),
    ("adam_m_float64", lambda: _core.adam_update(f32(3), f32(3), np.zeros(3), f32(3), 1e-3), TypeError, "m"),
    (
        "adam_param_fortran",
        lambda: _core.adam_update(fortran(f32(3, 2)), f32(3, 2), f32(3, 2), f32(3, 2), 1e-3),
        ValueError,
        "param",
    ),
    (
        "adam_step_zero",
        lambda: _core.adam_update(f32(3), f32(3), f32(3), f32(3), 1e-3, step=0),
        ValueError,
        "step",
    ),
    (
        "adam_lr_inf",
        lambda: _core.adam_update(f32(3), f32(3), f32(3), f32(3), float("inf")),
        ValueError,
        "learning_rate",
    ),
    (
        "adam_beta_1",
        lambda: _core.adam_update(f32(3), f32(3), f32(3), f32(3), 1e-3, beta_1=1.0),
        ValueError,
        "beta_1",
    ),
    (
        "adam_beta_2",
        lambda: _core.adam_update(f32(3), f32(3), f32(3), f32(3), 1e-3, beta_2=-0.5),
        ValueError,
        "beta_2",
    ),
    (
        "adam_epsilon",
        lambda: _core.adam_update(f32(3), f32(3), f32(3), f32(3), 1e-3, epsilon=-1.0),
        ValueError,
        "epsilon",
    ),
]


@pytest.mark.parametrize("call,exc,name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert message.startswith(name + ":"), message
    assert "expected" in message, message


def test_messages_say_expected_and_received():
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got float64"):
        _core.conv2d_forward(X.astype(np.float64), W, B)
    with pytest.raises(ValueError, match=r"w: expected shape\[2\] == 3 .*got shape \(3, 3, 2, 4\)"):
        _core.conv2d_forward(X, f32(3, 3, 2, 4), B)
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 4\), got 7"):
        _core.softmax_cross_entropy(LOGITS, np.array([0, 7, 1], np.int32))
    with pytest.raises(ValueError, match=r"step: expected an integer >= 1, got 0"):
        _core.adam_update(f32(3), f32(3), f32(3), f32(3), 1e-3, step=0)


def test_wrong_python_types_are_type_errors():
    with pytest.raises(TypeError):
        _core.conv2d_forward(X, W, B, stride_h="2")
    with pytest.raises(TypeError):
        _core.conv2d_forward(X, W, B, padding=None)
    with pytest.raises(TypeError):
        _core.maxpool2d_backward(f32(2, 2, 2, 3), ARGMAX, 5)
    with pytest.raises(TypeError):
        _core.adam_update(f32(3), f32(3), f32(3), f32(3), 1e-3, step=1.5)


def test_failed_update_leaves_arrays_untouched():
    param, m, v = f32(3), f32(3), f32(3)
    with pytest.raises(ValueError):
        _core.adam_update(param, f32(3), m, v, 1e-3, step=0)
    np.testing.assert_array_equal(param, 1.0)
    np.testing.assert_array_equal(m, 1.0)
    np.testing.assert_array_equal(v, 1.0)


def test_inputs_are_not_modified():
    x, w, b = X.copy() * 0.5, W.copy(), B.copy()
    _core.conv2d_forward(x, w, b, relu=True)
    _core.conv2d_backward(DY, x, w)
    np.testing.assert_array_equal(x, X * 0.5)
    np.testing.assert_array_equal(w, W)
    np.testing.assert_array_equal(b, B)
