// Fiber scheduler of the CUDA emulator (see cuda_runtime.h).
#include "cuda_runtime.h"

namespace emu {
namespace {
enum State { kRun, kBarBlock, kBarWarp, kDone };
struct Fiber {
  ucontext_t ctx;
  State st;
  uint3 tid;
  int lin;
};
ucontext_t g_sched;
std::vector<Fiber> g_fibers;
std::vector<std::vector<char>> g_stacks;
std::vector<uint64_t> g_slots;
const std::function<void()>* g_fn = nullptr;
Fiber* g_fiber = nullptr;
constexpr size_t kStack = 256 * 1024;

void trampoline(int i) {
  (*g_fn)();
  g_fibers[size_t(i)].st = kDone;
}
}  // namespace

uint3 g_block_idx{0, 0, 0};
dim3 g_block_dim, g_grid_dim;
int g_sms = 4;
int g_smem_optin = 101376;  // sm_86/89 opt-in limit: exercises the global-factor fallback of the SPD solver
cudaError_t g_last_error = cudaSuccess;
char* g_dyn_smem = nullptr;

uint3& cur_tid() { return g_fiber->tid; }
int cur_lane() { return g_fiber->lin % 32; }
uint64_t* warp_slots() { return &g_slots[size_t(g_fiber->lin / 32) * 32]; }
void block_barrier() {
  g_fiber->st = kBarBlock;
  swapcontext(&g_fiber->ctx, &g_sched);
}
void warp_barrier() {
  g_fiber->st = kBarWarp;
  swapcontext(&g_fiber->ctx, &g_sched);
}

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& fn) {
  const int n = int(block.x * block.y * block.z);
  if (g_stacks.size() < size_t(n)) g_stacks.resize(size_t(n), std::vector<char>(kStack));
  g_fibers.assign(size_t(n), Fiber{});
  g_slots.assign(size_t((n + 31) / 32) * 32, 0);
  std::vector<char> dyn(smem + 64, char(0xff));
  g_dyn_smem = dyn.data();
  g_grid_dim = grid;
  g_block_dim = block;
  g_fn = &fn;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        g_block_idx = uint3{bx, by, bz};
        for (int i = 0; i < n; i++) {
          Fiber& f = g_fibers[size_t(i)];
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = g_stacks[size_t(i)].data();
          f.ctx.uc_stack.ss_size = kStack;
          f.ctx.uc_link = &g_sched;
          makecontext(&f.ctx, reinterpret_cast<void (*)()>(trampoline), 1, i);
          f.st = kRun;
          f.lin = i;
          f.tid = uint3{unsigned(i) % block.x, (unsigned(i) / block.x) % block.y, unsigned(i) / (block.x * block.y)};
        }
        for (;;) {
          for (int i = 0; i < n; i++) {
            Fiber& f = g_fibers[size_t(i)];
            if (f.st != kRun) continue;
            g_fiber = &f;
            swapcontext(&g_sched, &f.ctx);
          }
          int done = 0, atblock = 0;
          for (auto& f : g_fibers) done += f.st == kDone, atblock += f.st == kBarBlock;
          if (done == n) break;
          bool released = false;
          for (int w = 0; w * 32 < n; w++) {  // a warp whose live lanes all wait at a shuffle
            int live = 0, atwarp = 0;
            for (int l = w * 32; l < std::min(n, w * 32 + 32); l++) {
              live += g_fibers[size_t(l)].st != kDone;
              atwarp += g_fibers[size_t(l)].st == kBarWarp;
            }
            if (atwarp > 0 && atwarp == live) {
              for (int l = w * 32; l < std::min(n, w * 32 + 32); l++)
                if (g_fibers[size_t(l)].st == kBarWarp) g_fibers[size_t(l)].st = kRun;
              released = true;
            } else if (atwarp > 0) {
              fprintf(stderr, "emu: divergent warp shuffle in block (%u, %u, %u), warp %d\n", bx, by, bz, w);
              abort();
            }
          }
          if (released) continue;
          if (atblock == n - done) {
            for (auto& f : g_fibers)
              if (f.st == kBarBlock) f.st = kRun;
            continue;
          }
          fprintf(stderr, "emu: deadlock in block (%u, %u, %u)\n", bx, by, bz);
          abort();
        }
      }
  g_dyn_smem = nullptr;
}
}  // namespace emu
