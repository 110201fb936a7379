// Node-API arguments of the runtime-shaped ops (docs/runtime-caches.md): a sequence table (kvt_seqs) and the
// tensor-parallel selection problem (kvt_tp_select), parsed from the descriptors lib/ops/batch.ts builds.
#pragma once

#include <napi.h>

#include "glue.h"

namespace kvt {
namespace napi {

// {layout: 0 ragged | 1 padded | 2 NHD | 3 HND, pageSize, indptr?, lengths?, indices?, lastPageLen?}. As TensorArg:
// resolve() on the JS thread as the last step of a Prepare, then fill() (touches no JS value) where the C call runs.
struct SeqsArg {
  TensorArg indptr, lengths, indices, last;
  int32_t layout = -1, page_size = 0;
  void resolve() { ::kvt::napi::resolve(indptr, lengths, indices, last); }
  const kvt_seqs* fill(kvt_seqs* s) const {
    *s = kvt_seqs{};
    s->layout = layout;
    s->page_size = page_size;
    s->indptr = indptr.ptr();
    s->lengths = lengths.ptr();
    s->indices = indices.ptr();
    s->last_page_len = last.ptr();
    return s;
  }
};
SeqsArg parse_seqs(const Napi::Value& v, const char* name);

// {seqs?, scores, keep?, select: {keep, safeguard, sinks, recent}, headOffset, totalHeads, radixBits, state}. The
// tensor-parallel rounds are short synchronous calls: use() resolves every view and returns the problem.
struct TpArg {
  SeqsArg seqs;
  bool has_seqs = false;
  TensorArg scores, keep, state;
  kvt_seqs s{};
  kvt_tp_select p{};
  const kvt_tp_select* use() {
    if (has_seqs) seqs.resolve();
    ::kvt::napi::resolve(scores, keep, state);
    p.seqs = has_seqs ? seqs.fill(&s) : nullptr;
    p.scores = scores.ptr();
    p.keep = keep.ptr();
    p.state = state.ptr();
    return &p;
  }
};
TpArg parse_tp(const Napi::Value& v);

}  // namespace napi
}  // namespace kvt
