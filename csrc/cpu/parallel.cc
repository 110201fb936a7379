// The CPU backend's thread pool behind parallel_for (parallel.h): workers started once, chunks handed out by an
// atomic counter, the caller working too; calls made while it is busy run inline. An exception thrown by a chunk
// (e.g. std::bad_alloc of a scratch buffer) never escapes a worker thread: the first one is rethrown on the caller
// once every chunk has finished.
#include "cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace kvt {
namespace cpu {
namespace {

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int t = 1; t < threads_; t++) workers_.emplace_back([this] { worker(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int threads() const { return threads_; }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int64_t max_chunks = (n + grain - 1) / grain;
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (threads_ <= 1 || max_chunks <= 1 || !busy.owns_lock() || in_pool_) {
      fn(0, n);  // serial: one thread, tiny job, nested or concurrent call
      return;
    }
    // About 4 chunks per thread for load balance, never below the grain.
    int64_t chunks = std::min<int64_t>(max_chunks, int64_t(threads_) * 4);
    int64_t size = (n + chunks - 1) / chunks;
    chunks = (n + size - 1) / size;
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      size_ = size;
      chunks_ = chunks;
      next_.store(0);
      done_ = 0;
      error_ = nullptr;
      generation_++;
    }
    cv_.notify_all();
    work();
    std::exception_ptr error;
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return done_ == chunks_; });
      fn_ = nullptr;
      error = error_;
      error_ = nullptr;
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  void work() {
    in_pool_ = true;
    int64_t finished = 0;
    for (;;) {
      int64_t c = next_.fetch_add(1);
      if (c >= chunks_) break;
      int64_t b = c * size_, e = std::min(n_, b + size_);
      try {
        (*fn_)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
      finished++;
    }
    in_pool_ = false;
    if (finished) {
      std::lock_guard<std::mutex> lk(mu_);
      done_ += finished;
      if (done_ == chunks_) done_cv_.notify_all();
    }
  }
  void worker() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || (generation_ != seen && fn_ != nullptr); });
        if (stop_) return;
        seen = generation_;
      }
      work();
    }
  }

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, size_ = 0, chunks_ = 0, done_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;  // the first exception of the current run (guarded by mu_)
  uint64_t generation_ = 0;
  bool stop_ = false;
  static thread_local bool in_pool_;
};

thread_local bool Pool::in_pool_ = false;

int configured_threads() {
  const char* env = std::getenv("KVTRIM_THREADS");
  if (env && *env) {
    int v = std::atoi(env);
    if (v >= 1) return std::min(v, 1024);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

Pool& pool() {
  static Pool* p = new Pool(configured_threads());  // intentionally leaked: workers live for the process
  return *p;
}

}  // namespace

int num_threads() { return pool().threads(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  pool().run(n, grain, fn);
}

}  // namespace cpu
}  // namespace kvt
