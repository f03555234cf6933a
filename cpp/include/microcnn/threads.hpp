// Thread control shared by all kernels. Kernels parallelise with OpenMP over outer loops.
#pragma once

namespace microcnn {
void set_num_threads(int n);
int get_num_threads();
bool has_openmp();

// Flush denormals to zero in the calling thread while this object lives (x86 MXCSR FTZ/DAZ; no-op elsewhere),
// then restore the previous mode, so numpy in the Python thread is unaffected. Kernels create one at the start
// of each parallel region: a tiny gradient must not slow a step down 100x.
class DenormalGuard {
 public:
  DenormalGuard();
  ~DenormalGuard();
  DenormalGuard(const DenormalGuard&) = delete;
  DenormalGuard& operator=(const DenormalGuard&) = delete;

 private:
  unsigned int saved_;
};
}  // namespace microcnn
