// Run-time choice of the GEMM micro-kernel: the best ISA this CPU runs, lowered by MICROCNN_ISA or
// set_kernel_isa. The direct convolution follows the same choice (kernel_isa()).
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels.hpp"
#include "microcnn/gemm.hpp"

namespace microcnn {
namespace gd = gemm_detail;

namespace {

bool cpu_has(Isa isa) {
#ifdef MICROCNN_X86
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
  if (isa == Isa::avx512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == Isa::generic;
}

const gd::KernelInfo& info_for(Isa isa) {
#ifdef MICROCNN_X86
  if (isa == Isa::avx512) return gd::avx512_kernel();
  if (isa == Isa::avx2) return gd::avx2_kernel();
#endif
  return gd::generic_kernel();
}

bool parse_isa(const std::string& name, Isa* out) {
  if (name == "generic") *out = Isa::generic;
  else if (name == "avx2" || name == "avx2/fma") *out = Isa::avx2;
  else if (name == "avx512") *out = Isa::avx512;
  else return false;
  return true;
}

// The best ISA this CPU runs, lowered (never raised) by MICROCNN_ISA.
const gd::KernelInfo* initial_kernel() {
  Isa best = cpu_has(Isa::avx512) ? Isa::avx512 : cpu_has(Isa::avx2) ? Isa::avx2 : Isa::generic;
  Isa wanted;
  const char* env = std::getenv("MICROCNN_ISA");
  if (env && parse_isa(env, &wanted) && static_cast<int>(wanted) < static_cast<int>(best)) best = wanted;
  return &info_for(best);
}

std::atomic<const gd::KernelInfo*> g_kernel{initial_kernel()};

}  // namespace

const gd::KernelInfo& gd::active_kernel() { return *g_kernel.load(); }

const char* kernel_isa_name() { return g_kernel.load()->name; }
Isa kernel_isa() { return g_kernel.load()->isa; }

std::vector<std::string> available_kernel_isas() {
  std::vector<std::string> names;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    if (cpu_has(isa)) names.push_back(info_for(isa).name);
  return names;
}

bool set_kernel_isa(const std::string& name) {
  Isa isa;
  if (!parse_isa(name, &isa) || !cpu_has(isa)) return false;
  g_kernel.store(&info_for(isa));
  return true;
}

}  // namespace microcnn
