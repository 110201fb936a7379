// init(): starts the backend and describes it (compiled variant, CUDA runtime and driver, usable devices, CPU
// threads); the CUDA part asks the CUDA runtime directly, like the device buffers of native_buffer.cc.
#include <napi.h>

#include <string>

#include "bindings.h"
#include "kvtrim.h"
#include "native_buffer.h"

#if defined(KVT_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

#ifndef KVTRIM_VERSION
#define KVTRIM_VERSION "0.0.0"
#endif
#ifndef KVTRIM_CUDA_ARCHS
#define KVTRIM_CUDA_ARCHS ""
#endif

namespace kvt {
namespace napi {

static bool g_cuda_enabled = false;

bool cuda_enabled() { return g_cuda_enabled; }

#if defined(KVT_WITH_CUDA)
// "12.4" from a CUDA version number (12040).
static std::string cuda_version_str(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

// The oldest driver branch that runs a CUDA runtime of this major version (minor version compatibility; NVIDIA, "CUDA
// Compatibility", Minor Version Compatibility, table 1: CUDA 13.x >= 580, 12.x >= 525, 11.x >= 450).
static int min_driver_branch(int runtime) {
  const int major = runtime / 1000;
  return major >= 13 ? 580 : major == 12 ? 525 : 450;
}

// Why CUDA cannot start when the runtime reports cudaErrorInsufficientDriver: no driver at all, or one older than the
// statically linked runtime needs; names the driver branch to install.
static std::string insufficient_driver(int runtime, int driver) {
  const std::string need = "R" + std::to_string(min_driver_branch(runtime)) + " or newer";
  const std::string rt = "this kvtrim binary links the CUDA " + cuda_version_str(runtime) + " runtime, which needs an NVIDIA driver " + need;
  if (driver <= 0) return "no NVIDIA driver found (cudaErrorInsufficientDriver): " + rt;
  return "the NVIDIA driver is too old (cudaErrorInsufficientDriver): it supports CUDA up to " + cuda_version_str(driver) + "; " + rt +
         ". Update the driver, or use the CPU backend (KVTRIM_BACKEND=cpu)";
}
#endif

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool want = info.Length() > 0 && info[0].IsObject() && info[0].As<Napi::Object>().Get("cuda").ToBoolean();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
  Napi::Object versions = Napi::Object::New(env);
  versions.Set("kvtrim", KVTRIM_VERSION);
  versions.Set("napi", 8);
  versions.Set("abi", kvt_abi_version());
  versions.Set("compiledWithCuda", Napi::Boolean::New(env, kvt_built_with_cuda() != 0));
  std::string reason;
  bool ok = false;
#if defined(KVT_WITH_CUDA)
  versions.Set("cudaArchs", KVTRIM_CUDA_ARCHS);
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  versions.Set("cudaRuntime", cuda_version_str(rt));
  versions.Set("minDriver", "R" + std::to_string(min_driver_branch(rt)));
  if (!want) {
    reason = "CUDA disabled by KVTRIM_BACKEND=cpu";
  } else {
    int drv = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    if (drv > 0) versions.Set("cudaDriver", cuda_version_str(drv));
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver) {
      reason = insufficient_driver(rt, drv);
      cudaGetLastError();
    } else if (e != cudaSuccess) {
      reason = std::string("CUDA is unavailable: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
      cudaGetLastError();
    } else if (count == 0) {
      reason = "no CUDA device found";
    } else {
      std::string unsupported;
      for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
        bool sup = p.major >= 8;
        Napi::Object dev = Napi::Object::New(env);
        dev.Set("id", d);
        dev.Set("name", p.name);
        dev.Set("sm", std::to_string(p.major) + "." + std::to_string(p.minor));
        dev.Set("memory", double(p.totalGlobalMem));
        dev.Set("multiprocessors", p.multiProcessorCount);
        dev.Set("supported", sup);
        devices.Set(devices.Length(), dev);
        if (sup) {
          ok = true;
          // Stream-ordered allocations (op outputs, scratch) come from the default pool; keep freed memory in
          // the pool instead of returning it to the driver at every synchronisation.
          cudaMemPool_t pool;
          if (cudaDeviceGetDefaultMemPool(&pool, d) == cudaSuccess) {
            uint64_t keep = UINT64_MAX;
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
          }
          cudaGetLastError();
        }
        else unsupported += std::string(unsupported.empty() ? "" : ", ") + p.name + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
      }
      if (!ok) reason = "no supported GPU: kvtrim's CUDA kernels need compute capability 8.0 or newer; found " + unsupported;
    }
  }
#else
  (void)want;
  reason = "this kvtrim binary was built without CUDA (no CUDA compiler was found when it was built)";
#endif
  g_cuda_enabled = ok;
  out.Set("cuda", Napi::Boolean::New(env, ok));
  if (!ok) out.Set("reason", reason);
  out.Set("devices", devices);
  out.Set("threads", kvt_num_threads());
  out.Set("cpuIsa", kvt_cpu_isa());
  {
    const char* names[8];
    const int n = kvt_cpu_isa_levels(names, 8);
    Napi::Array levels = Napi::Array::New(env);
    for (int i = 0; i < n && i < 8; i++) levels.Set(uint32_t(i), names[i]);
    out.Set("cpuIsaLevels", levels);
  }
  out.Set("versions", versions);
  return out;
}

}  // namespace napi
}  // namespace kvt
