// Scheduling of the batched ops on the CPU backend (docs/runtime-caches.md §3): every sequence runs the per-sequence
// CPU code on its own view; small sequences one per pool task, large ones one after another with their own
// threading. Every op's split is fixed by its shapes, so results do not depend on this schedule.
#pragma once

#include <stdint.h>

#include <functional>

#include "abi/validate.h"

namespace kvt {
namespace cpu {

// Runs fn(s) for every s < B. `rows(s)` is the work of sequence s in rows (e.g. H * n_s): sequences below a fixed
// threshold share one parallel_for (their inner parallel_for calls run inline), the others run in turn.
void for_each_seq(int64_t B, const std::function<int64_t(int64_t)>& rows, const std::function<void(int64_t)>& fn);

// The selection of an empty sequence: counts [H] = 0, indices [H, cap] = -1.
void empty_selection(const View& idx, const View& cnt);

}  // namespace cpu
}  // namespace kvt
