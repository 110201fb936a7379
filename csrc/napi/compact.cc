// Binding of compactInPlace (C ABI kvt_compact_in_place).
#include "batch.h"
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

// compactInPlace(seqs, keys, values, indices, counts, moments?, {lengths?, pageCounts?, lastPageLen?, freed?,
//                freedCount?}, stream); compactInPlaceAsync(..., abort)
static OpCall prepare_compact(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "indices"), cnt = parse_tensor(info[4], "counts");
  MomentsArg m = parse_moments(info[5], false);
  Napi::Object o = opts_object(info[6], "outputs");
  TensorArg len = parse_tensor(o.Get("lengths"), "lengths", true), pc = parse_tensor(o.Get("pageCounts"), "pageCounts", true);
  TensorArg lp = parse_tensor(o.Get("lastPageLen"), "lastPageLen", true), fr = parse_tensor(o.Get("freed"), "freed", true);
  TensorArg fc = parse_tensor(o.Get("freedCount"), "freedCount", true);
  kvt_stream st = parse_stream(info[7]);
  resolve(sq, k, v, idx, cnt, m, len, pc, lp, fr, fc);
  return [=] {
    kvt_seqs s;
    kvt_moments mm;
    const kvt_compact_out out{len.ptr(), pc.ptr(), lp.ptr(), fr.ptr(), fc.ptr()};
    return kvt_compact_in_place(sq.fill(&s), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), m.fill(&mm), &out, st);
  };
}
Napi::Value CompactInPlace(const Napi::CallbackInfo& info) { return run_now(info, prepare_compact); }
Napi::Value CompactInPlaceAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_compact, 8, "kvtrim.compactInPlace"); }

}  // namespace napi
}  // namespace kvt
