// A small persistent thread pool for the CPU backend. `parallel_for(n, fn)` splits [0, n) into chunks run by the
// pool and the calling thread; it returns when all chunks are done. Calls made while the pool is busy (nested
// or concurrent) run inline on the caller, so the pool can never deadlock.
#pragma once

#include <stdint.h>

#include <functional>

namespace kvt {
namespace cpu {

// Number of threads the CPU backend uses: KVTRIM_THREADS if set (>= 1), else the hardware concurrency.
int num_threads();

// Runs fn(begin, end) over disjoint ranges covering [0, n), at least `grain` items per range (except the last).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace kvt
