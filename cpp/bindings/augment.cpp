#include <cmath>
#include <string>
#include <vector>

#include <pybind11/stl.h>

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

// A finite number >= 0 (and < upper when upper > 0) from config[key], or the default when the key is absent.
double config_number(const py::dict& config, const char* key, double fallback, double upper = 0) {
  if (!config.contains(key)) return fallback;
  const py::object v = config[key];
  if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)))
    type_error(std::string("config[\"") + key + "\"]: expected a number, got " +
               py::str(py::type::of(v).attr("__name__")).cast<std::string>());
  const double x = v.cast<double>();
  if (!std::isfinite(x) || x < 0 || (upper > 0 && x >= upper))
    value_error(std::string("config[\"") + key + "\"]: expected a finite number >= 0" +
                (upper > 0 ? " and < " + std::to_string(upper) : std::string()) + ", got " + std::to_string(x));
  return x;
}

bool config_flag(const py::dict& config, const char* key) {
  if (!config.contains(key)) return false;
  const py::object v = config[key];
  if (!py::isinstance<py::bool_>(v))
    type_error(std::string("config[\"") + key + "\"]: expected True or False, got " + py::str(v).cast<std::string>());
  return v.cast<bool>();
}

AugmentConfig parse_config(const py::dict& config) {
  static const char* known[] = {"horizontal_flip", "vertical_flip", "dihedral", "rotation", "shear", "zoom",
                                "fill_mode", "cval", "blur", "gamma", "contrast", "brightness", "noise"};
  for (auto item : config) {
    const std::string k = py::str(item.first).cast<std::string>();
    bool ok = false;
    for (const char* name : known) ok = ok || k == name;
    if (!ok)
      value_error("config: unknown key \"" + k + "\" (expected horizontal_flip, vertical_flip, dihedral, rotation, "
                  "shear, zoom, fill_mode, cval, blur, gamma, contrast, brightness, noise)");
  }
  AugmentConfig c;
  c.horizontal_flip = config_flag(config, "horizontal_flip");
  c.vertical_flip = config_flag(config, "vertical_flip");
  c.dihedral = config_flag(config, "dihedral");
  c.rotation = config_number(config, "rotation", 0, 360);
  c.shear = config_number(config, "shear", 0, 90);
  if (config.contains("zoom")) {
    const auto z = config["zoom"].cast<std::vector<double>>();
    if (z.size() != 2 || !std::isfinite(z[0]) || !std::isfinite(z[1]) || !(0 < z[0] && z[0] <= z[1]))
      value_error("config[\"zoom\"]: expected a pair (lo, hi) with 0 < lo <= hi");
    c.zoom_lo = z[0], c.zoom_hi = z[1];
  }
  if (config.contains("fill_mode")) c.fill_mode = parse_fill_mode(config["fill_mode"].cast<std::string>());
  if (config.contains("cval")) {
    const double v = config["cval"].cast<double>();
    if (!std::isfinite(v)) value_error("config[\"cval\"]: expected a finite number");
    c.cval = static_cast<float>(v);
  }
  c.blur = config_number(config, "blur", 0, 50);
  c.gamma = config_number(config, "gamma", 0, 5);
  c.contrast = config_number(config, "contrast", 0, 1);
  c.brightness = config_number(config, "brightness", 0, 1e6);
  c.noise = config_number(config, "noise", 0, 1e6);
  return c;
}

py::array_t<int64_t> checked_indices(const py::object& obj, py::ssize_t n) {
  auto idx = checked<int64_t>(obj, "indices", 1);
  if (idx.shape(0) != n)
    value_error("indices: expected " + std::to_string(n) + " sample indices (one per image), got shape " +
                shape_str(idx));
  return idx;
}
}  // namespace

void bind_augment(py::module_& m) {
  m.def(
      "augment_params",
      [](uint64_t seed, int64_t epoch, const py::object& idx_obj, int64_t height, int64_t width,
         const py::dict& config) {
        auto idx = checked<int64_t>(idx_obj, "indices", 1);
        expect_positive(height, "height");
        expect_positive(width, "width");
        const AugmentConfig c = parse_config(config);
        const int64_t N = idx.shape(0);
        py::array_t<double> params({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(kAugmentParams)});
        auto mats = empty_f32({N, 2, 3});
        augment_params(params.mutable_data(), mats.mutable_data(), seed, epoch, idx.data(), N, height, width, c);
        return py::make_tuple(params, mats);
      },
      py::arg("seed"), py::arg("epoch"), py::arg("indices"), py::arg("height"), py::arg("width"), py::arg("config"),
      "indices (N) int64 -> (params (N,12) float64, matrices (N,2,3) float32): the random draws of augment_batch\n"
      "for each sample (columns: dihedral, flip_h, flip_v, rotation, shear, zx, zy, blur, gamma, contrast,\n"
      "brightness, noise) and its sampling matrix.");
  m.def(
      "augment_batch",
      [](const py::object& x_obj, uint64_t seed, int64_t epoch, const py::object& idx_obj, const py::dict& config) {
        auto x = f32(x_obj, "x", 4);
        expect_nonempty(x, "x");
        auto idx = checked_indices(idx_obj, x.shape(0));
        const AugmentConfig c = parse_config(config);
        const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
        auto y = empty_f32({N, H, W, C});
        float* yp = y.mutable_data();
        const float* xp = x.data();
        const int64_t* ip = idx.data();
        {
          py::gil_scoped_release release;
          microcnn::augment_batch(yp, xp, seed, epoch, ip, N, H, W, C, c);
        }
        return y;
      },
      py::arg("x"), py::arg("seed"), py::arg("epoch"), py::arg("indices"), py::arg("config"),
      "x (N,H,W,C), indices (N) int64 -> (N,H,W,C): per-sample seeded augmentation (microcnn/augment.hpp);\n"
      "sample n draws from the stream of (seed, epoch, indices[n]).");

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
