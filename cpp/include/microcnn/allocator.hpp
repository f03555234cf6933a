// Heap tuning for the large per-step arrays.
#pragma once

namespace microcnn {

// A training step allocates and frees tens of large arrays (the seed net's first activation is 92 MB).
// glibc serves blocks above its mmap threshold (dynamic, at most 32 MB by default) with fresh mappings, so
// every step page-faults and zeroes them again: about a third of the time of a memory-bound kernel such as
// ReLU backward. Raising the threshold to 1 GiB (and the trim threshold with it) keeps freed blocks in the
// heap for the next step. Process-wide and glibc only; MICROCNN_MALLOC_TUNING=0 in the environment turns it
// off. Called once when microcnn._core is imported; returns whether the tuning was applied.
bool tune_allocator();

}  // namespace microcnn
