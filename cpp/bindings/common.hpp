// Shared argument checking for the bindings: every array is checked for dtype, ndim, shape and contiguity
// before a pointer is taken, and a bad one raises TypeError/ValueError naming the argument, what was expected
// and what was received. No math lives in the bindings.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace microcnn::bind {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }

// Checks that `obj` is a numpy array of dtype T, with `ndim` dimensions (-1: any), C-contiguous,
// and (when `writeable`) writeable. Returns it as py::array_t<T> without copying.
template <typename T>
py::array_t<T> checked(const py::handle& obj, const char* name, int ndim, bool writeable = false) {
  if (!py::isinstance<py::array>(obj))
    type_error(std::string(name) + ": expected a numpy array, got " +
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  auto a = py::reinterpret_borrow<py::array>(obj);
  // equal(), not is(): an unpickled array carries an equal but distinct dtype object; a byte-swapped one is
  // not equal and is rejected (kernels read native floats).
  if (!a.dtype().equal(py::dtype::of<T>()))
    type_error(std::string(name) + ": expected dtype " + py::str(py::dtype::of<T>()).cast<std::string>() +
               ", got " + dtype_str(a));
  if (ndim >= 0 && a.ndim() != ndim)
    value_error(std::string(name) + ": expected a " + std::to_string(ndim) + "-D array, got shape " +
                shape_str(a));
  if (!(a.flags() & py::array::c_style))
    value_error(std::string(name) + ": expected a C-contiguous array (use numpy.ascontiguousarray)");
  if (writeable && !a.writeable()) value_error(std::string(name) + ": expected a writeable array");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

inline py::array_t<float> f32(const py::handle& obj, const char* name, int ndim, bool writeable = false) {
  return checked<float>(obj, name, ndim, writeable);
}

// Requires a.shape(dim) == expected; `what` says where the expectation comes from, e.g. "x.shape[3] (C)".
inline void expect_dim(const py::array& a, const char* name, int dim, py::ssize_t expected, const std::string& what) {
  if (a.shape(dim) != expected)
    value_error(std::string(name) + ": expected shape[" + std::to_string(dim) + "] == " + std::to_string(expected) +
                " (" + what + "), got shape " + shape_str(a));
}

inline void expect_positive(long long v, const char* name) {
  if (v <= 0) value_error(std::string(name) + ": expected a positive integer, got " + std::to_string(v));
}

inline void expect_nonempty(const py::array& a, const char* name) {
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) == 0) value_error(std::string(name) + ": expected a non-empty array, got shape " + shape_str(a));
}

// A fresh C-contiguous float32 array of the given shape (uninitialised).
inline py::array_t<float> empty_f32(const std::vector<py::ssize_t>& shape) { return py::array_t<float>(shape); }

}  // namespace microcnn::bind
