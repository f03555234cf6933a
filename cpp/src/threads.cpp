#include "microcnn/threads.hpp"

#ifdef MICROCNN_OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace microcnn {

void set_num_threads(int n) {
#ifdef MICROCNN_OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

int get_num_threads() {
#ifdef MICROCNN_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool has_openmp() {
#ifdef MICROCNN_OPENMP
  return true;
#else
  return false;
#endif
}

#if defined(__x86_64__) || defined(_M_X64)
DenormalGuard::DenormalGuard() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
DenormalGuard::~DenormalGuard() { _mm_setcsr(saved_); }
#else
DenormalGuard::DenormalGuard() : saved_(0) {}
DenormalGuard::~DenormalGuard() {}
#endif

}  // namespace microcnn
