#include <cmath>

#include "common.hpp"
#include "microcnn/augment.hpp"

namespace microcnn::bind {

namespace {
FillMode parse_fill_mode(const std::string& s) {
  if (s == "nearest") return FillMode::Nearest;
  if (s == "constant") return FillMode::Constant;
  if (s == "reflect") return FillMode::Reflect;
  value_error("fill_mode: expected \"nearest\", \"constant\" or \"reflect\", got \"" + s + "\"");
}
}  // namespace

void bind_augment(py::module_& m) {
  m.def(
      "affine_warp",
      [](const py::object& x_obj, const py::object& m_obj, const std::string& fill_mode, double cval) {
        auto x = f32(x_obj, "x", 4);
        auto mats = f32(m_obj, "matrices", 3);
        expect_nonempty(x, "x");
        expect_dim(mats, "matrices", 0, x.shape(0), "x.shape[0] (N)");
        expect_dim(mats, "matrices", 1, 2, "a 2x3 affine matrix per image");
        expect_dim(mats, "matrices", 2, 3, "a 2x3 affine matrix per image");
        const FillMode mode = parse_fill_mode(fill_mode);
        if (!std::isfinite(cval)) value_error("cval: expected a finite number, got " + std::to_string(cval));
        const float* mp = mats.data();
        for (py::ssize_t i = 0; i < mats.size(); ++i)
          if (!std::isfinite(mp[i]))
            value_error("matrices: expected finite values, got " + std::to_string(mp[i]) + " in matrix " +
                        std::to_string(i / 6));
        const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
        auto y = empty_f32({N, H, W, C});
        float* yp = y.mutable_data();
        const float* xp = x.data();
        {
          py::gil_scoped_release release;
          microcnn::affine_warp(yp, xp, mp, N, H, W, C, mode, static_cast<float>(cval));
        }
        return y;
      },
      py::arg("x"), py::arg("matrices"), py::arg("fill_mode") = "nearest", py::arg("cval") = 0.0,
      "x (N,H,W,C), matrices (N,2,3) -> (N,H,W,C): output pixel (r, c) samples x at (row, col) = A @ (r, c, 1)\n"
      "with bilinear interpolation; outside the image fill_mode \"nearest\" (clamp), \"constant\" (cval) or\n"
      "\"reflect\" (half-sample symmetric).");
}

}  // namespace microcnn::bind
