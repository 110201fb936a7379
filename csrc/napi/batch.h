// Node-API arguments of the runtime-shaped ops (docs/runtime-caches.md): a sequence table (kvt_seqs) and the
// tensor-parallel selection problem (kvt_tp_select), parsed from the descriptors lib/ops/batch.ts builds.
#pragma once

#include <napi.h>

#include "glue.h"

namespace kvt {
namespace napi {

// {layout: 0 ragged | 1 padded | 2 NHD | 3 HND, pageSize, indptr?, lengths?, indices?, lastPageLen?}. ptr() points
// the kvt_seqs at this object's own tensors (call it after any copy).
struct SeqsArg {
  TensorArg indptr, lengths, indices, last;
  kvt_seqs s{};
  const kvt_seqs* ptr() {
    s.indptr = indptr.ptr();
    s.lengths = lengths.ptr();
    s.indices = indices.ptr();
    s.last_page_len = last.ptr();
    return &s;
  }
};
SeqsArg parse_seqs(const Napi::Value& v, const char* name);

// {seqs?, scores, keep?, select: {keep, safeguard, sinks, recent}, headOffset, totalHeads, radixBits, state}.
struct TpArg {
  SeqsArg seqs;
  bool has_seqs = false;
  TensorArg scores, keep, state;
  kvt_tp_select p{};
  const kvt_tp_select* ptr() {
    p.seqs = has_seqs ? seqs.ptr() : nullptr;
    p.scores = scores.ptr();
    p.keep = keep.ptr();
    p.state = state.ptr();
    return &p;
  }
};
TpArg parse_tp(const Napi::Value& v);

}  // namespace napi
}  // namespace kvt
