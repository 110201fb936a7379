// CUDA emulator core (see cuda_runtime.h and README.md): fiber scheduler with barrier / warp-collective checking,
// shared-memory arena, cp.async and mma.sync emulation, guarded device memory and the runtime API.
#include "cuda_runtime.h"

#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {

uint3 g_block_idx{0, 0, 0};
uint3 g_no_tid_storage{0, 0, 0};
uint3* g_tid = &g_no_tid_storage;
dim3 g_block_dim, g_grid_dim;

namespace {

// ------------------------------------------------------------------------------------------------------------
// configuration (environment, read once)
struct Config {
  int sm = 86;
  int sms = 4;
  int optin = 101376;
  int thread_order = 0;  // 0 forward, 1 reverse, 2 random (reshuffled every scheduling round)
  int block_order = 0;   // 0 forward, 1 reverse, 2 random
  uint64_t seed = 1;
  bool trace = false;
  bool profile = false;
  int runtime = CUDART_VERSION;  // what cudaRuntimeGetVersion reports
  int driver = CUDART_VERSION;   // what cudaDriverGetVersion reports (0: no driver)
  std::string coverage;
  std::string api_log;
};

int env_int(const char* name, int dflt) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}
int env_order(const char* name) {
  const char* v = getenv(name);
  if (!v || !*v || !strcmp(v, "forward")) return 0;
  if (!strcmp(v, "reverse")) return 1;
  if (!strcmp(v, "random")) return 2;
  fprintf(stderr, "emu: %s must be forward, reverse or random (got '%s')\n", name, v);
  return 0;
}

Config load_config() {
  Config c;
  c.sm = env_int("KVTRIM_EMU_SM", 86);
  c.optin = c.sm >= 90 ? 232448 : (c.sm == 80 || c.sm == 87 ? 166912 : 101376);
  c.optin = env_int("KVTRIM_EMU_SMEM_OPTIN", c.optin);
  c.sms = std::max(1, env_int("KVTRIM_EMU_SMS", 4));
  c.thread_order = env_order("KVTRIM_EMU_THREAD_ORDER");
  c.block_order = env_order("KVTRIM_EMU_BLOCK_ORDER");
  c.seed = uint64_t(env_int("KVTRIM_EMU_SEED", 1));
  c.trace = env_int("KVTRIM_EMU_TRACE", 0) != 0;
  c.profile = env_int("KVTRIM_EMU_PROFILE", 0) != 0;
  c.runtime = env_int("KVTRIM_EMU_RUNTIME", c.runtime);
  c.driver = env_int("KVTRIM_EMU_DRIVER", c.driver);
  if (const char* v = getenv("KVTRIM_EMU_COVERAGE")) c.coverage = v;
  if (const char* v = getenv("KVTRIM_EMU_API_LOG")) c.api_log = v;
  return c;
}
Config& cfg() {
  static Config c = load_config();
  return c;
}

size_t page_size() {
  static size_t p = size_t(sysconf(_SC_PAGESIZE));
  return p;
}
size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

thread_local cudaError_t t_last_error = cudaSuccess;

// ------------------------------------------------------------------------------------------------------------
// guarded regions (device allocations, fiber stacks, the shared arena) for fault diagnostics
struct Alloc {
  char* map;        // mapping: [guard page][data pages][guard page]
  size_t map_size;
  char* data;       // start of the user range (256-byte aligned; ends at most 255 bytes before the back guard)
  size_t bytes;     // requested size
  bool live;
  uint64_t serial;
};
std::mutex g_mem_mu;
std::map<uintptr_t, Alloc> g_allocs;  // by data address (live and quarantined)
std::vector<uintptr_t> g_quarantine;  // freed allocations, oldest first (PROT_NONE until unmapped)
size_t g_quarantine_bytes = 0;
uint64_t g_alloc_serial = 0;
size_t g_live_bytes = 0;

// ------------------------------------------------------------------------------------------------------------
// fibers
enum State { kRun, kBar, kWarp, kDone };
struct CpOp {
  char* dst;
  const char* src;
  int n, src_n, group;
};
struct Fiber {
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
  char* stack = nullptr;  // mapping base (guard page first)
  State st = kRun;
  uint3 tid{0, 0, 0};
  int lin = 0;
  const char* bar_file = nullptr;
  int bar_line = 0;
  uint64_t bar_count = 0;
  int op = 0;
  unsigned mask = 0;
  int arg = 0;
  uint64_t in[16];
  uint64_t out[4];
  std::vector<CpOp> cp;
  int cp_committed = 0;
};
constexpr size_t kStackBytes = 256 * 1024;
std::vector<Fiber> g_fibers;
std::vector<char*> g_stacks;  // reused across launches
Fiber* g_cur = nullptr;
void* g_sched_sp = nullptr;
#if !defined(__x86_64__)
ucontext_t g_sched_uc;
#endif
LaunchFn g_fn{nullptr, nullptr};
uint3 g_no_tid{0, 0, 0};

// current launch (diagnostics, coverage)
const char* g_launch_name = nullptr;
const char* g_kernel_pretty = nullptr;
bool g_in_kernel = false;
std::mutex g_launch_mu;
std::set<std::string> g_covered;
uint64_t g_launches = 0;
struct Prof {
  uint64_t launches = 0, blocks = 0;
  double ms = 0;
};
std::map<std::string, Prof> g_profile;  // by kernel (pretty name)

// shared memory arena: [static declarations ...][free][dynamic smem][guard page]
constexpr size_t kArenaBytes = 256 * 1024;
char* g_arena = nullptr;      // base of the usable region
char* g_arena_end = nullptr;  // start of the guard page
char* g_dyn = nullptr;
size_t g_dyn_bytes = 0;
size_t g_static_used = 0, g_static_used_max = 0;
struct SharedDecl {
  const void* key;
  size_t off;
};
std::vector<SharedDecl> g_decls;
size_t g_launch_max_dyn = 0;  // attribute limit of the current kernel

std::map<const void*, int> g_func_max_dyn;  // cudaFuncAttributeMaxDynamicSharedMemorySize

// streams and events
struct StreamObj {
  uint64_t magic = 0x6b7674737472656dull;
  unsigned flags = 0;
};
struct EventObj {
  uint64_t magic = 0x6b76746576656e74ull;
  bool recorded = false;
  bool timing = true;
  std::chrono::steady_clock::time_point t;
};
std::set<const void*> g_streams, g_events;
int g_mempool_dummy = 0;

}  // namespace

// ------------------------------------------------------------------------------------------------------------
// diagnostics
namespace {
void where(char* buf, size_t n) {
  buf[0] = 0;
  if (!g_in_kernel) return;
  const char* name = g_kernel_pretty ? g_kernel_pretty : g_launch_name;
  if (g_cur)
    snprintf(buf, n, "\n  in kernel %s\n  block (%u, %u, %u) of grid (%u, %u, %u), thread (%u, %u, %u) of block (%u, %u, %u)",
             name ? name : "?", g_block_idx.x, g_block_idx.y, g_block_idx.z, g_grid_dim.x, g_grid_dim.y, g_grid_dim.z,
             g_cur->tid.x, g_cur->tid.y, g_cur->tid.z, g_block_dim.x, g_block_dim.y, g_block_dim.z);
  else
    snprintf(buf, n, "\n  in kernel %s\n  block (%u, %u, %u) of grid (%u, %u, %u)", name ? name : "?", g_block_idx.x,
             g_block_idx.y, g_block_idx.z, g_grid_dim.x, g_grid_dim.y, g_grid_dim.z);
}
}  // namespace

void fatal(const char* fmt, ...) {
  char msg[2048], loc[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  where(loc, sizeof loc);
  fprintf(stderr, "\nemu: %s%s\n", msg, loc);
  fflush(stderr);
  abort();
}

namespace {
struct sigaction g_old_segv, g_old_bus;

const char* describe_fault(uintptr_t a, char* buf, size_t n) {
  // device allocations (live or quarantined)
  for (const auto& kv : g_allocs) {
    const Alloc& al = kv.second;
    const uintptr_t m0 = uintptr_t(al.map), m1 = m0 + al.map_size;
    if (a < m0 || a >= m1) continue;
    const uintptr_t d0 = uintptr_t(al.data), d1 = d0 + al.bytes;
    if (!al.live)
      snprintf(buf, n, "use after free: address %p is %ld bytes into a freed %zu-byte device allocation (#%llu)",
               (void*)a, long(a - d0), al.bytes, (unsigned long long)al.serial);
    else if (a >= d1)
      snprintf(buf, n, "out-of-bounds device access: address %p is %lu bytes past the end of a %zu-byte allocation (#%llu)",
               (void*)a, (unsigned long)(a - d1), al.bytes, (unsigned long long)al.serial);
    else
      snprintf(buf, n, "out-of-bounds device access: address %p is %lu bytes before the start of a %zu-byte allocation (#%llu)",
               (void*)a, (unsigned long)(d0 - a), al.bytes, (unsigned long long)al.serial);
    return buf;
  }
  if (g_arena && a >= uintptr_t(g_arena_end) && a < uintptr_t(g_arena_end) + page_size()) {
    snprintf(buf, n, "out-of-bounds shared-memory access: address %p is %lu bytes past the end of the %zu-byte dynamic "
             "shared memory", (void*)a, (unsigned long)(a - uintptr_t(g_arena_end)), g_dyn_bytes);
    return buf;
  }
  for (char* s : g_stacks)
    if (a >= uintptr_t(s) && a < uintptr_t(s) + page_size()) {
      snprintf(buf, n, "stack overflow of an emulated thread (%zu-byte fiber stacks)", kStackBytes);
      return buf;
    }
  return nullptr;
}

void on_fault(int sig, siginfo_t* si, void* uc) {
  char buf[512], loc[1024];
  const char* what = describe_fault(uintptr_t(si->si_addr), buf, sizeof buf);
  if (!what && g_in_kernel) {
    snprintf(buf, sizeof buf, "invalid memory access at %p (not device memory of this emulator)", si->si_addr);
    what = buf;
  }
  if (what) {
    where(loc, sizeof loc);
    fprintf(stderr, "\nemu: %s%s\n", what, loc);
    fflush(stderr);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  // not ours: chain
  struct sigaction& old = sig == SIGBUS ? g_old_bus : g_old_segv;
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction) old.sa_sigaction(sig, si, uc);
    return;
  }
  if (old.sa_handler == SIG_IGN) return;
  if (old.sa_handler == SIG_DFL || !old.sa_handler) {
    signal(sig, SIG_DFL);
    return;  // re-executes the faulting instruction with the default action
  }
  old.sa_handler(sig);
}

// UBSan (the kernel translation units are built with it when available): name the emulated thread before it aborts.
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));
void on_sanitizer_death() {
  char loc[1024];
  where(loc, sizeof loc);
  if (loc[0]) fprintf(stderr, "emu: the error above happened%s\n", loc);
}

void install_fault_handler() {
  static bool done = false;
  if (done) return;
  done = true;
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(on_sanitizer_death);
  stack_t ss;
  if (sigaltstack(nullptr, &ss) == 0 && (ss.ss_flags & SS_DISABLE)) {
    const size_t sz = 256 * 1024;
    void* p = mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      ss.ss_sp = p;
      ss.ss_size = sz;
      ss.ss_flags = 0;
      sigaltstack(&ss, nullptr);
    }
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_old_segv);
  sigaction(SIGBUS, &sa, &g_old_bus);
}

// ------------------------------------------------------------------------------------------------------------
// device memory
void* device_alloc(size_t bytes) {
  const size_t pg = page_size();
  const size_t user = round_up(bytes ? bytes : 1, 256);
  const size_t data_pages = round_up(user, pg);
  const size_t map_size = data_pages + 2 * pg;
  char* m = static_cast<char*>(mmap(nullptr, map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (m == MAP_FAILED) return nullptr;
  if (mprotect(m + pg, data_pages, PROT_READ | PROT_WRITE) != 0) {
    munmap(m, map_size);
    return nullptr;
  }
  char* data = m + pg + (data_pages - user);
  memset(m + pg, 0xff, data_pages);  // uninitialised device memory: NaN / -1 everywhere
  Alloc a{m, map_size, data, bytes, true, ++g_alloc_serial};
  g_allocs[uintptr_t(data)] = a;
  g_live_bytes += bytes;
  return data;
}

cudaError_t device_free(void* p, const char* what) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lk(g_mem_mu);
  auto it = g_allocs.find(uintptr_t(p));
  if (it == g_allocs.end() || !it->second.live) {
    fprintf(stderr, "emu: %s(%p): %s\n", what, p,
            it == g_allocs.end() ? "not the start of a device allocation" : "double free of a device allocation");
    return cudaErrorInvalidValue;
  }
  Alloc& a = it->second;
  a.live = false;
  g_live_bytes -= a.bytes;
  mprotect(a.map, a.map_size, PROT_NONE);
  g_quarantine.push_back(uintptr_t(p));
  g_quarantine_bytes += a.map_size;
  while (g_quarantine.size() > 4096 || g_quarantine_bytes > (size_t(512) << 20)) {
    auto old = g_allocs.find(g_quarantine.front());
    g_quarantine.erase(g_quarantine.begin());
    if (old == g_allocs.end()) continue;
    g_quarantine_bytes -= old->second.map_size;
    munmap(old->second.map, old->second.map_size);
    g_allocs.erase(old);
  }
  return cudaSuccess;
}

const Alloc* find_alloc(const void* p) {
  auto it = g_allocs.upper_bound(uintptr_t(p));
  if (it == g_allocs.begin()) return nullptr;
  --it;
  const Alloc& a = it->second;
  if (uintptr_t(p) < uintptr_t(a.data) || uintptr_t(p) >= uintptr_t(a.data) + std::max<size_t>(a.bytes, 1)) return nullptr;
  return &a;
}

// ------------------------------------------------------------------------------------------------------------
// context switching
#if defined(__x86_64__)
extern "C" void kvt_emu_switch(void** save_sp, void* to_sp);
asm(R"(
  .text
  .p2align 4
  .globl kvt_emu_switch
  .hidden kvt_emu_switch
  .type kvt_emu_switch,@function
kvt_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kvt_emu_switch,.-kvt_emu_switch
)");
#endif

[[noreturn]] void fiber_entry();

// Run queue of the current scheduling round: a fiber that blocks switches straight to the next runnable one; the
// last one returns to the scheduler, which resolves collectives and barriers and starts the next round.
std::vector<int> g_ready;
size_t g_ready_pos = 0;
int g_n_done = 0, g_n_bar = 0, g_n_warp = 0;

// The current fiber has blocked (or exited): run the next fiber of the round, or go back to the scheduler.
void yield_fiber() {
  Fiber* f = g_cur;
  while (g_ready_pos < g_ready.size()) {
    Fiber* next = &g_fibers[size_t(g_ready[g_ready_pos++])];
    if (next->st != kRun) continue;
#if defined(__x86_64__)
    g_cur = next;
    g_tid = &g_cur->tid;
    kvt_emu_switch(&f->sp, next->sp);
#else
    g_cur = next;
    g_tid = &g_cur->tid;
    swapcontext(&f->uc, &next->uc);
#endif
    return;
  }
  g_cur = nullptr;
  g_tid = &g_no_tid_storage;
#if defined(__x86_64__)
  kvt_emu_switch(&f->sp, g_sched_sp);
#else
  swapcontext(&f->uc, &g_sched_uc);
#endif
}

// Scheduler side: runs the round's queue (fibers chain among themselves) until every fiber has blocked.
void run_round() {
  while (g_ready_pos < g_ready.size()) {
    Fiber* f = &g_fibers[size_t(g_ready[g_ready_pos++])];
    if (f->st != kRun) continue;
    g_cur = f;
    g_tid = &g_cur->tid;
#if defined(__x86_64__)
    kvt_emu_switch(&g_sched_sp, f->sp);
#else
    swapcontext(&g_sched_uc, &f->uc);
#endif
    g_cur = nullptr;
    g_tid = &g_no_tid_storage;
  }
}

void complete_cp(Fiber* f, int below_group) {
  size_t k = 0;
  for (size_t i = 0; i < f->cp.size(); i++) {
    const CpOp& c = f->cp[i];
    if (c.group < below_group) {
      memcpy(c.dst, c.src, size_t(c.src_n));
      if (c.src_n < c.n) memset(c.dst + c.src_n, 0, size_t(c.n - c.src_n));
    } else {
      f->cp[k++] = c;
    }
  }
  f->cp.resize(k);
}

void fiber_entry() {
  g_fn.call(g_fn.ctx);
  Fiber* f = g_cur;
  complete_cp(f, INT32_MAX);
  f->st = kDone;
  g_n_done++;
  yield_fiber();
  __builtin_unreachable();
}

char* new_stack() {
  const size_t pg = page_size();
  char* m = static_cast<char*>(mmap(nullptr, kStackBytes + pg, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (m == MAP_FAILED) fatal("cannot map a fiber stack");
  mprotect(m, pg, PROT_NONE);  // guard page at the low end
  return m;
}

void init_fiber(Fiber& f, int i) {
  char* top = g_stacks[size_t(i)] + page_size() + kStackBytes;
#if defined(__x86_64__)
  uint64_t* sp = reinterpret_cast<uint64_t*>(uintptr_t(top) & ~uintptr_t(15));
  *--sp = 0;                                         // alignment slot (fiber_entry never returns)
  *--sp = reinterpret_cast<uint64_t>(&fiber_entry);  // popped by `ret`
  for (int r = 0; r < 6; r++) *--sp = 0;             // rbp rbx r12-r15
  f.sp = sp;
#else
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = g_stacks[size_t(i)] + page_size();
  f.uc.uc_stack.ss_size = kStackBytes;
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, reinterpret_cast<void (*)()>(fiber_entry), 0);
#endif
}

// ------------------------------------------------------------------------------------------------------------
// shared memory arena
void ensure_arena() {
  if (g_arena) return;
  const size_t pg = page_size();
  char* m = static_cast<char*>(mmap(nullptr, kArenaBytes + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (m == MAP_FAILED) fatal("cannot map the shared-memory arena");
  g_arena = m;
  g_arena_end = m + kArenaBytes;
  mprotect(g_arena_end, pg, PROT_NONE);
}

// ------------------------------------------------------------------------------------------------------------
// warp collectives
const char* op_name(int op) {
  switch (op) {
    case kOpSync: return "__syncwarp";
    case kOpShflIdx: return "__shfl_sync";
    case kOpShflUp: return "__shfl_up_sync";
    case kOpShflDown: return "__shfl_down_sync";
    case kOpShflXor: return "__shfl_xor_sync";
    case kOpBallot: return "__ballot_sync";
    case kOpAll: return "__all_sync";
    case kOpAny: return "__any_sync";
    case kOpReduceAdd: return "__reduce_add_sync";
    case kOpReduceMinU: case kOpReduceMinS: return "__reduce_min_sync";
    case kOpReduceMaxU: case kOpReduceMaxS: return "__reduce_max_sync";
    case kOpReduceAnd: return "__reduce_and_sync";
    case kOpReduceOr: return "__reduce_or_sync";
    case kOpReduceXor: return "__reduce_xor_sync";
    case kOpMatchAny: return "__match_any_sync";
    case kOpMatchAll: return "__match_all_sync";
    case kOpMmaBf16: return "mma.sync.m16n8k16 (bf16)";
    case kOpMmaF16: return "mma.sync.m16n8k16 (f16)";
    default: return "?";
  }
}

constexpr uint64_t kPoison = ~uint64_t(0);

float half_bits_to_float(uint16_t h, bool bf16) {
  if (bf16) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  float v;
  if (e == 0) v = ldexpf(float(m), -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = ldexpf(float(m | 0x400u), int(e) - 25);
  return sign ? -v : v;
}

// Resolves the collective of lanes `part` (bit i = lane base+i) of the current block.
void resolve(int op, int base, unsigned part, unsigned mask) {
  Fiber* L[32] = {nullptr};
  for (int i = 0; i < 32; i++)
    if (part >> i & 1u) L[i] = &g_fibers[size_t(base + i)];
  switch (op) {
    case kOpSync: break;
    case kOpShflIdx: case kOpShflUp: case kOpShflDown: case kOpShflXor:
      for (int i = 0; i < 32; i++) {
        if (!L[i]) continue;
        const int w = int(L[i]->in[1]), seg = i / w * w, a = L[i]->arg;
        int src = i;
        if (op == kOpShflIdx) src = seg + ((a % w) + w) % w;
        else if (op == kOpShflUp) src = (i - seg) >= a ? i - a : i;
        else if (op == kOpShflDown) src = (i - seg) + a < w ? i + a : i;
        else {
          const int t = i ^ a;
          src = (t >= seg + w || t >= 32 || t < 0) ? i : t;  // later groups (or outside the warp): own value
        }
        L[i]->out[0] = (src >= 0 && src < 32 && L[src]) ? L[src]->in[0] : kPoison;
      }
      break;
    case kOpBallot: case kOpAll: case kOpAny: {
      unsigned bits = 0;
      for (int i = 0; i < 32; i++)
        if (L[i] && L[i]->in[0]) bits |= 1u << i;
      const uint64_t r = op == kOpBallot ? bits : (op == kOpAny ? bits != 0 : bits == part);
      for (int i = 0; i < 32; i++)
        if (L[i]) L[i]->out[0] = r;
      break;
    }
    case kOpReduceAdd: case kOpReduceMinU: case kOpReduceMaxU: case kOpReduceMinS: case kOpReduceMaxS:
    case kOpReduceAnd: case kOpReduceOr: case kOpReduceXor: {
      bool first = true;
      uint32_t r = 0;
      for (int i = 0; i < 32; i++) {
        if (!L[i]) continue;
        const uint32_t v = uint32_t(L[i]->in[0]);
        if (first) r = v;
        else if (op == kOpReduceAdd) r += v;
        else if (op == kOpReduceMinU) r = std::min(r, v);
        else if (op == kOpReduceMaxU) r = std::max(r, v);
        else if (op == kOpReduceMinS) r = uint32_t(std::min(int32_t(r), int32_t(v)));
        else if (op == kOpReduceMaxS) r = uint32_t(std::max(int32_t(r), int32_t(v)));
        else if (op == kOpReduceAnd) r &= v;
        else if (op == kOpReduceOr) r |= v;
        else r ^= v;
        first = false;
      }
      for (int i = 0; i < 32; i++)
        if (L[i]) L[i]->out[0] = r;
      break;
    }
    case kOpMatchAny: case kOpMatchAll: {
      bool all = true;
      int any_lane = -1;
      for (int i = 0; i < 32; i++)
        if (L[i]) {
          if (any_lane >= 0 && L[i]->in[0] != L[any_lane]->in[0]) all = false;
          any_lane = i;
        }
      for (int i = 0; i < 32; i++) {
        if (!L[i]) continue;
        if (op == kOpMatchAll) {
          L[i]->out[0] = all ? part : 0u;
        } else {
          unsigned m = 0;
          for (int j = 0; j < 32; j++)
            if (L[j] && L[j]->in[0] == L[i]->in[0]) m |= 1u << j;
          L[i]->out[0] = m;
        }
      }
      break;
    }
    case kOpMmaBf16: case kOpMmaF16: {
      // mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: fragments per the PTX ISA (groupID = lane >> 2,
      // threadID_in_group = lane & 3). Products are exact; the 16-term sum (+ C) is formed in double and rounded once
      // to f32 (the hardware's internal accumulation order/rounding is not specified: see README).
      if (part != 0xffffffffu || mask != 0xffffffffu) fatal("mma.sync.aligned needs all 32 lanes of the warp (mask %08x)", mask);
      const bool bf = op == kOpMmaBf16;
      float A[16][16], B[16][8], C[16][8];
      for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        const uint64_t* in = L[l]->in;
        auto lo = [&](uint64_t w) { return half_bits_to_float(uint16_t(w & 0xffffu), bf); };
        auto hi = [&](uint64_t w) { return half_bits_to_float(uint16_t((w >> 16) & 0xffffu), bf); };
        A[g][2 * t] = lo(in[0]); A[g][2 * t + 1] = hi(in[0]);
        A[g + 8][2 * t] = lo(in[1]); A[g + 8][2 * t + 1] = hi(in[1]);
        A[g][2 * t + 8] = lo(in[2]); A[g][2 * t + 9] = hi(in[2]);
        A[g + 8][2 * t + 8] = lo(in[3]); A[g + 8][2 * t + 9] = hi(in[3]);
        B[2 * t][g] = lo(in[4]); B[2 * t + 1][g] = hi(in[4]);
        B[2 * t + 8][g] = lo(in[5]); B[2 * t + 9][g] = hi(in[5]);
        float c[4];
        for (int e = 0; e < 4; e++) {
          const uint32_t u = uint32_t(in[6 + e]);
          memcpy(&c[e], &u, 4);
        }
        C[g][2 * t] = c[0]; C[g][2 * t + 1] = c[1]; C[g + 8][2 * t] = c[2]; C[g + 8][2 * t + 1] = c[3];
      }
      for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
        for (int e = 0; e < 4; e++) {
          double s = C[rows[e]][cols[e]];
          for (int k = 0; k < 16; k++) s += double(A[rows[e]][k]) * double(B[k][cols[e]]);
          const float f = float(s);
          uint32_t u;
          memcpy(&u, &f, 4);
          L[l]->out[e] = u;
        }
      }
      break;
    }
    default: fatal("unknown warp collective %d", op);
  }
}

// One pass over the warps: resolves every collective whose named lanes have all arrived. Returns true if any was.
bool resolve_warp(int base, int lanes) {
  bool released = false;
  {
    unsigned handled = 0;
    for (int i = 0; i < lanes; i++) {
      Fiber& f = g_fibers[size_t(base + i)];
      if (f.st != kWarp || (handled >> i & 1u)) continue;
      const unsigned mask = f.mask;
      if (!(mask >> i & 1u)) {
        g_cur = &f;
        g_tid = &g_cur->tid;
        fatal("%s with mask %08x that does not name the calling lane %d", op_name(f.op), mask, i);
      }
      unsigned part = 0;
      bool ready = true;
      for (int j = 0; j < 32; j++) {
        if (!(mask >> j & 1u) || j >= lanes) continue;  // lanes beyond the block do not exist (inactive)
        Fiber& o = g_fibers[size_t(base + j)];
        if (o.st == kDone) continue;  // exited lanes named in the mask: their values are undefined
        if (o.st == kBar) {
          g_cur = &f;
          g_tid = &g_cur->tid;
          fatal("divergent warp: lane %d waits in %s (mask %08x) while lane %d of the mask waits at __syncthreads (%s:%d)",
                i, op_name(f.op), mask, j, o.bar_file, o.bar_line);
        }
        if (o.st == kRun) {
          ready = false;
          continue;
        }
        if (o.op != f.op || o.mask != mask) {
          g_cur = &f;
          g_tid = &g_cur->tid;
          fatal("divergent warp collectives: lane %d is in %s (mask %08x), lane %d in %s (mask %08x)", i,
                op_name(f.op), mask, j, op_name(o.op), o.mask);
        }
        part |= 1u << j;
      }
      if (!ready) continue;
      resolve(f.op, base, part, mask);
      for (int j = 0; j < 32; j++)
        if (part >> j & 1u) {
          g_fibers[size_t(base + j)].st = kRun;
          g_n_warp--;
        }
      handled |= part;
      released = true;
    }
  }
  return released;
}

std::mt19937_64& rng() {
  static std::mt19937_64 r(cfg().seed);
  return r;
}

void run_block(int n) {
  for (int i = 0; i < n; i++) {
    Fiber& f = g_fibers[size_t(i)];
    f.st = kRun;
    f.lin = i;
    f.tid = uint3{unsigned(i) % g_block_dim.x, (unsigned(i) / g_block_dim.x) % g_block_dim.y,
                  unsigned(i) / (g_block_dim.x * g_block_dim.y)};
    f.bar_count = 0;
    f.bar_file = nullptr;
    f.cp.clear();
    f.cp_committed = 0;
    init_fiber(f, i);
  }
  g_n_done = g_n_bar = g_n_warp = 0;
  const int nwarps = (n + 31) / 32;
  std::vector<int> warps(static_cast<size_t>(nwarps), 0), lanes(32, 0);
  for (int w = 0; w < nwarps; w++) warps[size_t(w)] = cfg().thread_order == 1 ? nwarps - 1 - w : w;
  for (int l = 0; l < 32; l++) lanes[size_t(l)] = cfg().thread_order == 1 ? 31 - l : l;
  for (;;) {
    // Warp by warp: the lanes run until they block; a warp collective is resolved as soon as its lanes have arrived
    // (then they run on), so a warp proceeds until its lanes wait at __syncthreads or exit.
    if (cfg().thread_order == 2) std::shuffle(warps.begin(), warps.end(), rng());
    for (int w : warps) {
      const int base = w * 32, nl = std::min(32, n - base);
      for (;;) {
        if (cfg().thread_order == 2) std::shuffle(lanes.begin(), lanes.end(), rng());
        g_ready.clear();
        for (int l : lanes)
          if (l < nl && g_fibers[size_t(base + l)].st == kRun) g_ready.push_back(base + l);
        g_ready_pos = 0;
        run_round();
        if (g_n_warp == 0 || !resolve_warp(base, nl)) break;
      }
    }
    if (g_n_done == n) break;
    if (g_n_warp == 0 && g_n_bar == n - g_n_done) {
      int first = -1;
      for (int i = 0; i < n; i++) {
        Fiber& f = g_fibers[size_t(i)];
        if (f.st != kBar) continue;
        if (first < 0) first = i;
        const Fiber& r = g_fibers[size_t(first)];
        if (f.bar_line != r.bar_line || f.bar_count != r.bar_count || (f.bar_file != r.bar_file && strcmp(f.bar_file, r.bar_file) != 0)) {
          g_cur = &f;
          g_tid = &g_cur->tid;
          fatal("divergent __syncthreads: thread %d waits at %s:%d (its barrier #%llu) while thread %d waits at %s:%d "
                "(barrier #%llu)", i, f.bar_file, f.bar_line, (unsigned long long)f.bar_count, first, r.bar_file,
                r.bar_line, (unsigned long long)r.bar_count);
        }
        f.st = kRun;
      }
      g_n_bar = 0;
      continue;
    }
    // deadlock: describe who waits where
    std::string desc;
    for (int i = 0; i < n && desc.size() < 1500; i++) {
      const Fiber& f = g_fibers[size_t(i)];
      char b[200];
      if (f.st == kBar) snprintf(b, sizeof b, "\n    thread %d at __syncthreads %s:%d", i, f.bar_file, f.bar_line);
      else if (f.st == kWarp) snprintf(b, sizeof b, "\n    thread %d in %s (mask %08x)", i, op_name(f.op), f.mask);
      else continue;
      desc += b;
    }
    fatal("deadlock: no thread can proceed (%d of %d exited)%s", g_n_done, n, desc.c_str());
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------------------
// kernel-side API
uint3& cur_tid() { return g_cur ? g_cur->tid : g_no_tid; }
int cur_lane() { return g_cur ? g_cur->lin % 32 : 0; }

void block_barrier(const char* file, int line) {
  Fiber* f = g_cur;
  if (!f) fatal("__syncthreads outside a kernel");
  f->st = kBar;
  f->bar_file = file;
  f->bar_line = line;
  f->bar_count++;
  g_n_bar++;
  yield_fiber();
}

void warp_collective(int op, unsigned mask, int arg, const uint64_t* in, int n, uint64_t* out, int nout) {
  Fiber* f = g_cur;
  if (!f) fatal("%s outside a kernel", op_name(op));
  f->op = op;
  f->mask = mask;
  f->arg = arg;
  for (int i = 0; i < n; i++) f->in[i] = in[i];
  f->st = kWarp;
  g_n_warp++;
  yield_fiber();
  for (int i = 0; i < nout; i++) out[i] = f->out[i];
}

unsigned active_mask() {
  Fiber* f = g_cur;
  if (!f) return 0;
  const int base = f->lin / 32 * 32, n = int(g_fibers.size());
  unsigned m = 0;
  for (int j = 0; j < 32 && base + j < n; j++)
    if (g_fibers[size_t(base + j)].st != kDone) m |= 1u << j;
  return m;
}

void* shared_alloc(const void* key, size_t bytes, size_t align) {
  for (const auto& d : g_decls)
    if (d.key == key) return g_arena + d.off;
  const size_t off = round_up(g_static_used, align);
  if (off + bytes > 48 * 1024)
    fatal("static shared memory of the kernel exceeds 48 KB (%zu bytes)", off + bytes);
  if (g_arena + off + bytes > g_dyn)
    fatal("static (%zu bytes) + dynamic (%zu bytes) shared memory exceed the device's %d-byte per-block limit",
          off + bytes, g_dyn_bytes, cfg().optin);
  g_static_used = off + bytes;
  g_static_used_max = std::max(g_static_used_max, g_static_used);
  if (g_launch_max_dyn == 0 && g_static_used + g_dyn_bytes > 48 * 1024)
    fatal("static (%zu bytes) + dynamic (%zu bytes) shared memory exceed 48 KB without "
          "cudaFuncSetAttribute(MaxDynamicSharedMemorySize): the launch fails on a GPU", g_static_used, g_dyn_bytes);
  if (g_static_used + std::max(g_launch_max_dyn, g_dyn_bytes) > size_t(cfg().optin))
    fatal("static (%zu bytes) + dynamic (%zu bytes) shared memory exceed the device's %d-byte per-block limit",
          g_static_used, std::max(g_launch_max_dyn, g_dyn_bytes), cfg().optin);
  g_decls.push_back({key, off});
  return g_arena + off;
}

char* dyn_smem_base() { return g_dyn; }

size_t shared_offset(const void* p) {
  const char* c = static_cast<const char*>(p);
  if (!g_arena || c < g_arena || c >= g_arena_end) return size_t(-1);
  return size_t(c - g_arena);
}

void* shared_ptr(uint64_t off, size_t bytes) {
  if (!g_arena || off + bytes > kArenaBytes) fatal("shared-memory address %#llx (+%zu) outside the shared window", (unsigned long long)off, bytes);
  return g_arena + off;
}

void kernel_enter(const char* pretty, const char* file, long max_threads) {
  if (!g_kernel_pretty) {
    g_kernel_pretty = pretty;
    if (!cfg().coverage.empty()) {
      const char* base = strrchr(file, '/');
      g_covered.insert(std::string(base ? base + 1 : file) + ": " + pretty);
    }
    if (cfg().trace) fprintf(stderr, "emu:   %s\n", pretty);
  }
  const long threads = long(g_block_dim.x) * g_block_dim.y * g_block_dim.z;
  if (max_threads > 0 && threads > max_threads)
    fatal("launch with %ld threads per block exceeds __launch_bounds__(%ld): the launch fails on a GPU", threads, max_threads);
}

bool is_device_range(const void* p, size_t n) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  const Alloc* a = find_alloc(p);
  return a && a->live && uintptr_t(p) + n <= uintptr_t(a->data) + a->bytes;
}

void set_last_error(cudaError_t e) {
  if (e != cudaSuccess && t_last_error == cudaSuccess) t_last_error = e;
}

// A stream handle that is neither a default stream nor a live stream of this process: using it is undefined behaviour
// on a GPU (a destroyed handle may be reused by another stream, or crash), so the emulator stops here.
bool check_stream(cudaStream_t s, const char* what) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    if (g_streams.count(s)) return true;
  }
  fatal("%s: stream %p is not a live stream (destroyed, or never created by cudaStreamCreate)", what, (void*)s);
}

namespace ptx {
void cp_async(unsigned dst_off, const void* src, int n, int src_n, bool cg) {
  Fiber* f = g_cur;
  if (!f) fatal("cp.async outside a kernel");
  if (!(n == 4 || n == 8 || n == 16) || (cg && n != 16)) fatal("cp.async: invalid copy size %d", n);
  if (src_n < 0 || src_n > n) fatal("cp.async: source size %d outside [0, %d]", src_n, n);
  if (dst_off % unsigned(n) || reinterpret_cast<uintptr_t>(src) % uintptr_t(n))
    fatal("cp.async: misaligned %d-byte copy (shared offset %u, global %p)", n, dst_off, src);
  char* dst = static_cast<char*>(shared_ptr(dst_off, size_t(n)));
  if (src_n > 0 && !is_device_range(src, size_t(src_n)))
    fatal("cp.async: source [%p, +%d) is not inside a live device allocation", src, src_n);
  f->cp.push_back(CpOp{dst, static_cast<const char*>(src), n, src_n, f->cp_committed});
}
void cp_async_commit_group() {
  Fiber* f = g_cur;
  if (!f) fatal("cp.async.commit_group outside a kernel");
  f->cp_committed++;
}
void cp_async_wait_group(int n) {
  Fiber* f = g_cur;
  if (!f) fatal("cp.async.wait_group outside a kernel");
  complete_cp(f, f->cp_committed - n);
}
void mma_m16n8k16(int op, float& d0, float& d1, float& d2, float& d3, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                  unsigned b0, unsigned b1, float c0, float c1, float c2, float c3) {
  uint64_t in[10] = {a0, a1, a2, a3, b0, b1, 0, 0, 0, 0};
  const float c[4] = {c0, c1, c2, c3};
  for (int e = 0; e < 4; e++) {
    uint32_t u;
    memcpy(&u, &c[e], 4);
    in[6 + e] = u;
  }
  uint64_t out[4];
  warp_collective(op, 0xffffffffu, 0, in, 10, out, 4);
  float* d[4] = {&d0, &d1, &d2, &d3};
  for (int e = 0; e < 4; e++) {
    const uint32_t u = uint32_t(out[e]);
    memcpy(d[e], &u, 4);
  }
}
}  // namespace ptx

namespace {
void write_coverage() {
  if (cfg().profile && !g_profile.empty()) {
    std::vector<std::pair<std::string, Prof>> v(g_profile.begin(), g_profile.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (const auto& p : v) total += p.second.ms;
    fprintf(stderr, "emu: profile (%.0f ms in kernels)\n", total);
    for (const auto& p : v)
      fprintf(stderr, "emu: %9.1f ms %6llu launches %9llu blocks  %s\n", p.second.ms, (unsigned long long)p.second.launches,
              (unsigned long long)p.second.blocks, p.first.c_str());
  }
  if (cfg().coverage.empty() || g_covered.empty()) return;
  FILE* fp = fopen(cfg().coverage.c_str(), "a");
  if (!fp) return;
  for (const auto& s : g_covered) fprintf(fp, "%s\n", s.c_str());
  fclose(fp);
}
}  // namespace

cudaError_t launch(const char* name, const void* func, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   LaunchFn fn) {
  std::lock_guard<std::mutex> lk(g_launch_mu);
  if (!check_stream(stream, "kernel launch")) {
    set_last_error(cudaErrorInvalidResourceHandle);
    return cudaErrorInvalidResourceHandle;
  }
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0 || threads > 1024 ||
      block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    fprintf(stderr, "emu: invalid launch configuration of %s: grid (%u, %u, %u), block (%u, %u, %u)\n", name, grid.x,
            grid.y, grid.z, block.x, block.y, block.z);
    set_last_error(cudaErrorInvalidConfiguration);
    return cudaErrorInvalidConfiguration;
  }
  auto it = g_func_max_dyn.find(func);
  const size_t max_dyn = it == g_func_max_dyn.end() ? 48 * 1024 : size_t(it->second);
  if (smem > max_dyn) {
    fprintf(stderr, "emu: launch of %s with %zu bytes of dynamic shared memory above its limit of %zu bytes "
            "(cudaFuncSetAttribute(MaxDynamicSharedMemorySize) not raised)\n", name, smem, max_dyn);
    set_last_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  if (smem > size_t(cfg().optin)) {
    set_last_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  static bool once = false;
  if (!once) {
    once = true;
    install_fault_handler();
    atexit(write_coverage);
  }
  ensure_arena();
  g_launches++;
  if (cfg().trace)
    fprintf(stderr, "emu: launch #%llu %s grid (%u, %u, %u) block (%u, %u, %u) smem %zu\n", (unsigned long long)g_launches,
            name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
  const int n = int(threads);
  while (g_stacks.size() < size_t(n)) g_stacks.push_back(new_stack());
  if (g_fibers.size() != size_t(n)) g_fibers = std::vector<Fiber>(size_t(n));
  g_dyn_bytes = smem;
  g_dyn = g_arena_end - round_up(smem, 16);
  g_launch_max_dyn = it == g_func_max_dyn.end() ? 0 : size_t(it->second);
  g_grid_dim = grid;
  g_block_dim = block;
  g_fn = fn;
  g_launch_name = name;
  g_kernel_pretty = nullptr;
  g_in_kernel = true;
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> perm;
  if (cfg().block_order == 2 && nblocks <= (uint64_t(1) << 24)) {
    perm.resize(size_t(nblocks));
    for (uint64_t b = 0; b < nblocks; b++) perm[size_t(b)] = b;
    std::shuffle(perm.begin(), perm.end(), rng());
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t q = 0; q < nblocks; q++) {
    uint64_t b = q;
    if (!perm.empty()) b = perm[size_t(q)];
    else if (cfg().block_order == 1) b = nblocks - 1 - q;
    g_block_idx = uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y))};
    // fresh, poisoned shared memory for every block
    memset(g_arena, 0xff, g_static_used_max);
    memset(g_dyn, 0xff, size_t(g_arena_end - g_dyn));
    g_static_used = 0;
    g_decls.clear();
    run_block(n);
  }
  if (cfg().profile || cfg().trace) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (cfg().trace) fprintf(stderr, "emu:   %.2f ms\n", ms);
    Prof& p = g_profile[g_kernel_pretty ? g_kernel_pretty : name];
    p.launches++;
    p.blocks += nblocks;
    p.ms += ms;
  }
  g_in_kernel = false;
  g_cur = nullptr;
  g_tid = &g_no_tid_storage;
  return cudaSuccess;
}

cudaError_t func_set_attribute(const void* f, int attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > cfg().optin) return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lk(g_launch_mu);
    g_func_max_dyn[f] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return cudaErrorInvalidValue;
}

}  // namespace emu

// ------------------------------------------------------------------------------------------------------------
// runtime API
using namespace emu;

namespace {
cudaError_t ret(cudaError_t e) {
  set_last_error(e);
  return e;
}
bool check_device_range(const void* p, size_t n, const char* what) {
  if (n == 0 || emu::is_device_range(p, n)) return true;
  fprintf(stderr, "emu: %s: [%p, +%zu) is not inside a live device allocation\n", what, p, n);
  return false;
}
const emu::StreamObj* as_stream(cudaStream_t s) { return reinterpret_cast<const emu::StreamObj*>(s); }
}  // namespace

long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
  }
}

cudaError_t cudaGetDeviceCount(int* n) {
  // a driver of an older CUDA major version than the runtime (or none) cannot run it (minor version compatibility)
  if (cfg().driver / 1000 < cfg().runtime / 1000) {
    *n = 0;
    return ret(cudaErrorInsufficientDriver);
  }
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : ret(cudaErrorInvalidDevice); }

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev) {
  if (dev != 0) return ret(cudaErrorInvalidDevice);
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 * 1024; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = cfg().sms; break;
    case cudaDevAttrComputeCapabilityMajor: *v = cfg().sm / 10; break;
    case cudaDevAttrComputeCapabilityMinor: *v = cfg().sm % 10; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = cfg().optin + 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = cfg().optin; break;
    default: return ret(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev) {
  if (dev != 0) return ret(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "kvtrim CUDA emulator (sm_%d, %d SMs, %d-byte shared opt-in)", cfg().sm, cfg().sms,
           cfg().optin);
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = cfg().sm / 10;
  p->minor = cfg().sm % 10;
  p->multiProcessorCount = cfg().sms;
  p->maxThreadsPerMultiProcessor = 1536;
  p->sharedMemPerMultiprocessor = size_t(cfg().optin) + 1024;
  p->sharedMemPerBlockOptin = size_t(cfg().optin);
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = cfg().driver;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = cfg().runtime;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaDeviceReset() { return cudaSuccess; }

// KVTRIM_EMU_API_LOG=FILE: one line per allocation, free and cross-stream wait ("cudaFreeAsync 0x..."; stream 0 is
// the legacy default stream), for tests of which frees are stream-ordered.
static void api_log(const char* call, cudaStream_t s) {
  if (cfg().api_log.empty()) return;
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  if (FILE* f = fopen(cfg().api_log.c_str(), "a")) {
    fprintf(f, "%s %#llx\n", call, (unsigned long long)(s == cudaStreamLegacy ? 0 : uintptr_t(s)));
    fclose(f);
  }
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  api_log("cudaMalloc", nullptr);
  std::lock_guard<std::mutex> lk(g_mem_mu);
  *p = device_alloc(bytes);
  return *p ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* p) {
  api_log("cudaFree", nullptr);
  const cudaError_t e = device_free(p, "cudaFree");
  return e == cudaSuccess ? e : ret(e);
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  if (!check_stream(s, "cudaMallocAsync")) return ret(cudaErrorInvalidResourceHandle);
  api_log("cudaMallocAsync", s);
  std::lock_guard<std::mutex> lk(g_mem_mu);
  *p = device_alloc(bytes);
  return *p ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  if (!check_stream(s, "cudaFreeAsync")) return ret(cudaErrorInvalidResourceHandle);
  api_log("cudaFreeAsync", s);
  const cudaError_t e = device_free(p, "cudaFreeAsync");
  return e == cudaSuccess ? e : ret(e);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (!check_stream(s, "cudaMemcpyAsync")) return ret(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  const bool dev_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool dev_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind > cudaMemcpyDefault) return ret(cudaErrorInvalidValue);
  if ((dev_dst && !check_device_range(dst, bytes, "cudaMemcpy destination")) ||
      (dev_src && !check_device_range(src, bytes, "cudaMemcpy source")))
    return ret(cudaErrorInvalidValue);
  memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  if (!check_stream(s, "cudaMemsetAsync")) return ret(cudaErrorInvalidResourceHandle);
  if (!check_device_range(dst, bytes, "cudaMemset")) return ret(cudaErrorInvalidValue);
  memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) { return cudaMemsetAsync(dst, value, bytes, nullptr); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  auto* o = new emu::StreamObj;
  o->flags = flags;
  std::lock_guard<std::mutex> lk(g_mem_mu);
  g_streams.insert(o);
  *s = reinterpret_cast<cudaStream_t>(o);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  if (!s || !g_streams.count(s)) fatal("cudaStreamDestroy: stream %p is not a live stream (destroyed twice?)", (void*)s);
  g_streams.erase(s);
  delete as_stream(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return check_stream(s, "cudaStreamSynchronize") ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  return check_stream(s, "cudaStreamQuery") ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (!check_stream(s, "cudaStreamWaitEvent")) return ret(cudaErrorInvalidResourceHandle);
  api_log("cudaStreamWaitEvent", s);
  std::lock_guard<std::mutex> lk(g_mem_mu);
  return g_events.count(e) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}

namespace {
emu::EventObj* live_event(cudaEvent_t e) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  return g_events.count(e) ? reinterpret_cast<emu::EventObj*>(e) : nullptr;
}
}  // namespace
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  auto* o = new emu::EventObj;
  o->timing = !(flags & cudaEventDisableTiming);
  std::lock_guard<std::mutex> lk(g_mem_mu);
  g_events.insert(o);
  *e = reinterpret_cast<cudaEvent_t>(o);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!check_stream(s, "cudaEventRecord")) return ret(cudaErrorInvalidResourceHandle);
  emu::EventObj* o = live_event(e);
  if (!o) return ret(cudaErrorInvalidResourceHandle);
  o->recorded = true;
  o->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return live_event(e) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventQuery(cudaEvent_t e) { return live_event(e) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  emu::EventObj *x = live_event(a), *y = live_event(b);
  if (!x || !y) return ret(cudaErrorInvalidResourceHandle);
  if (!x->recorded || !y->recorded) return ret(cudaErrorInvalidResourceHandle);
  if (!x->timing || !y->timing) return ret(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(y->t - x->t).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  if (!g_events.count(e)) return ret(cudaErrorInvalidResourceHandle);
  g_events.erase(e);
  delete reinterpret_cast<emu::EventObj*>(e);
  return cudaSuccess;
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int dev) {
  if (dev != 0) return ret(cudaErrorInvalidDevice);
  *pool = reinterpret_cast<cudaMemPool_t>(&g_mempool_dummy);
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr, void*) {
  return pool == reinterpret_cast<cudaMemPool_t>(&g_mempool_dummy) ? cudaSuccess : ret(cudaErrorInvalidValue);
}
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  *total_bytes = size_t(16) << 30;
  *free_bytes = *total_bytes - std::min(*total_bytes, g_live_bytes);
  return cudaSuccess;
}
