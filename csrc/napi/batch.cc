// Parsing of the runtime-shaped arguments (napi/batch.h): sequence tables and tensor-parallel selection problems.
#include "batch.h"

#include <string>

namespace kvt {
namespace napi {

SeqsArg parse_seqs(const Napi::Value& v, const char* name) {
  const std::string nm(name);  // "seqs" or "qseqs"
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), nm + ": expected a sequence table object");
  Napi::Object o = v.As<Napi::Object>();
  SeqsArg a;
  a.layout = get_int(o, "layout", -1);
  a.page_size = get_int(o, "pageSize", 0);
  // a TensorArg keeps its name as a pointer: string literals only
  const bool q = nm == "qseqs";
  a.indptr = parse_tensor(o.Get("indptr"), q ? "qseqs.indptr" : "seqs.indptr", true);
  a.lengths = parse_tensor(o.Get("lengths"), q ? "qseqs.lengths" : "seqs.lengths", true);
  a.indices = parse_tensor(o.Get("indices"), q ? "qseqs.indices" : "seqs.indices", true);
  a.last = parse_tensor(o.Get("lastPageLen"), q ? "qseqs.lastPageLen" : "seqs.lastPageLen", true);
  return a;
}

TpArg parse_tp(const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "tp: expected a problem object");
  Napi::Object o = v.As<Napi::Object>();
  TpArg a;
  Napi::Value sq = o.Get("seqs");
  a.has_seqs = !sq.IsUndefined() && !sq.IsNull();
  if (a.has_seqs) a.seqs = parse_seqs(sq, "seqs");
  a.scores = parse_tensor(o.Get("scores"), "scores");
  a.keep = parse_tensor(o.Get("keep"), "keep", true);
  a.state = parse_tensor(o.Get("state"), "state");
  Napi::Object sel = opts_object(o.Get("select"), "select");
  kvt_select_default_opts(&a.p.select);
  a.p.select.budget = KVT_BUDGET_ADAPTIVE;
  a.p.select.keep = get_int(sel, "keep", a.p.select.keep);
  a.p.select.safeguard = get_num(sel, "safeguard", a.p.select.safeguard);
  a.p.select.sinks = get_int(sel, "sinks", a.p.select.sinks);
  a.p.select.recent = get_int(sel, "recent", a.p.select.recent);
  a.p.head_offset = get_int(o, "headOffset", 0);
  a.p.total_heads = get_int(o, "totalHeads", 0);
  a.p.radix_bits = get_int(o, "radixBits", 8);
  return a;
}

}  // namespace napi
}  // namespace kvt
