// Binding of compactInPlace (C ABI kvt_compact_in_place).
#include "batch.h"
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

// compactInPlace(seqs, keys, values, indices, counts, moments?, {lengths?, pageCounts?, lastPageLen?, freed?,
//                freedCount?}, stream)
Napi::Value CompactInPlace(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "indices"), cnt = parse_tensor(info[4], "counts");
  TensorArg parts[4];
  kvt_moments m{};
  const bool has_m = parse_moments(info[5], parts, &m);
  Napi::Object o = opts_object(info[6], "outputs");
  TensorArg len = parse_tensor(o.Get("lengths"), "lengths", true), pc = parse_tensor(o.Get("pageCounts"), "pageCounts", true);
  TensorArg lp = parse_tensor(o.Get("lastPageLen"), "lastPageLen", true), fr = parse_tensor(o.Get("freed"), "freed", true);
  TensorArg fc = parse_tensor(o.Get("freedCount"), "freedCount", true);
  const kvt_compact_out out{len.ptr(), pc.ptr(), lp.ptr(), fr.ptr(), fc.ptr()};
  check(info.Env(), kvt_compact_in_place(sq.ptr(), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), has_m ? &m : nullptr, &out,
                                         parse_stream(info[7])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
