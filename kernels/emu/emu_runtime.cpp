// emu_runtime.cpp — fibers, block scheduler, launch pool, kernel registry and the C API of or1_emu.
// See cuda_emu.h for the model. Limits checked at launch are CUDA's (sm_80/sm_90), so a launch
// configuration that a GPU would reject fails here too.
#include "cuda_emu.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace or1emu {

thread_local Fiber* tl_fiber OR1EMU_TLS = nullptr;
thread_local BlockState* tl_block OR1EMU_TLS = nullptr;
thread_local uint3 tl_blockIdx OR1EMU_TLS = {0, 0, 0};
thread_local dim3 tl_blockDim OR1EMU_TLS = dim3(1, 1, 1);
thread_local dim3 tl_gridDim OR1EMU_TLS = dim3(1, 1, 1);
thread_local unsigned char* tl_dynamicShared OR1EMU_TLS = nullptr;

namespace {

enum FiberState { Ready = 0, AtBlockBarrier = 1, AtWarpBarrier = 2, Done = 3 };
constexpr std::size_t StackSize = 256 * 1024;
constexpr int MaxThreadsPerBlock = 1024;
constexpr unsigned MaxSharedBytes = 227 * 1024;

struct Abort {};

// ------------------------------------------------------------------ context switch

#if defined(__x86_64__)
extern "C" void or1emu_switch(void** saveSp, void* loadSp);
asm(R"(
    .text
    .p2align 4
    .globl or1emu_switch
    .hidden or1emu_switch
    .type or1emu_switch,@function
or1emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size or1emu_switch,.-or1emu_switch
)");
#endif

} // namespace

/// Rendezvous state of one warp.
struct WarpState {
    int live = 0;          // lanes of this warp that have not exited
    int arrived = 0;
    unsigned gen = 0;
    unsigned mask = 0;     // mask of the rendezvous in progress
    unsigned long long slots[2][32];
    unsigned ballots[2];
};


struct BlockState {
    std::vector<Fiber> fibers;
    int count = 0;
    int live = 0;
    int arrived = 0;
    unsigned gen = 0;
    WarpState warps[1024 / 32];
    int warpCount = 0;
    void* schedulerSp = nullptr;
#if !defined(__x86_64__)
    ucontext_t schedulerContext;
#endif
    Adapter adapter = nullptr;
    void** args = nullptr;
    bool aborted = false;
    std::string error;
    std::vector<unsigned char> dynamicShared;
};

namespace {

bool g_reverse = false;
std::mutex g_errorMutex;
thread_local std::string tl_lastError;

void switch_to_scheduler(Fiber* f, BlockState* b) {
#if defined(__x86_64__)
    or1emu_switch(&f->sp, b->schedulerSp);
#else
    swapcontext(static_cast<ucontext_t*>(f->ucontextStorage), &b->schedulerContext);
#endif
}

void wait_here(Fiber* f, BlockState* b, int state) {
    f->state = state;
    switch_to_scheduler(f, b);
}

int warp_expected(const BlockState* b, const WarpState& w, int warp) {
    // Lanes named in the mask that exist and are still running.
    int lanes = std::min(32, b->count - warp * 32);
    int n = 0;
    for (int l = 0; l < lanes; l++) {
        if (!(w.mask >> l & 1u)) continue;
        if (b->fibers[warp * 32 + l].state != Done) n++;
    }
    return n;
}

void release_block_barrier(BlockState* b) {
    b->gen++;
    b->arrived = 0;
    for (int i = 0; i < b->count; i++)
        if (b->fibers[i].state == AtBlockBarrier) b->fibers[i].state = Ready;
}

void release_warp_barrier(BlockState* b, int warp) {
    WarpState& w = b->warps[warp];
    w.gen++;
    w.arrived = 0;
    int lanes = std::min(32, b->count - warp * 32);
    for (int l = 0; l < lanes; l++) {
        Fiber& f = b->fibers[warp * 32 + l];
        if (f.state == AtWarpBarrier) f.state = Ready;
    }
}

/// Arrives at the warp rendezvous; returns after every expected lane has arrived.
void warp_rendezvous(unsigned mask) {
    Fiber* f = tl_fiber;
    BlockState* b = tl_block;
    WarpState& w = b->warps[f->warp];
    if (w.arrived == 0) w.mask = mask;
    w.arrived++;
    unsigned gen = w.gen;
    if (w.arrived >= warp_expected(b, w, f->warp)) {
        release_warp_barrier(b, f->warp);
        // The last lane also yields, so that lanes resume in schedule order.
        wait_here(f, b, Ready);
        return;
    }
    f->waitGen = gen;
    wait_here(f, b, AtWarpBarrier);
}

void fail_block(BlockState* b, const std::string& message) {
    if (!b->aborted) {
        b->aborted = true;
        b->error = message;
    }
}

void fiber_main() {
    BlockState* b = tl_block;
    Fiber* f = tl_fiber;
    try {
        b->adapter(b->args);
    } catch (const Abort&) {
    } catch (const std::exception& e) {
        fail_block(b, std::string("kernel threw: ") + e.what());
    } catch (...) {
        fail_block(b, "kernel threw an unknown exception");
    }
    f->state = Done;
    b->live--;
    WarpState& w = b->warps[f->warp];
    w.live--;
    // An exited thread no longer holds back a barrier that everyone else has reached.
    if (b->arrived > 0 && b->arrived >= b->live) release_block_barrier(b);
    if (w.arrived > 0 && w.arrived >= warp_expected(b, w, f->warp)) release_warp_barrier(b, f->warp);
    switch_to_scheduler(f, b);
    std::abort(); // a finished fiber is never resumed
}

#if defined(__x86_64__)
extern "C" void or1emu_fiber_entry() { fiber_main(); }
#else
void fiber_entry_uc() { fiber_main(); }
#endif

void prepare_fiber(Fiber& f, BlockState* b) {
    if (!f.stack) {
        long page = sysconf(_SC_PAGESIZE);
        void* mem = mmap(nullptr, StackSize + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) throw std::runtime_error("could not map a fiber stack");
        mprotect(mem, page, PROT_NONE); // guard page: a stack overflow faults instead of corrupting a neighbour
        f.stack = static_cast<unsigned char*>(mem) + page;
        f.stackSize = StackSize;
    }
#if defined(__x86_64__)
    (void)b;
    auto top = reinterpret_cast<std::uintptr_t>(f.stack + f.stackSize) & ~static_cast<std::uintptr_t>(15);
    auto* sp = reinterpret_cast<std::uint64_t*>(top);
    *--sp = 0;                                                           // alignment pad
    *--sp = reinterpret_cast<std::uint64_t>(&or1emu_fiber_entry);        // 'return' address
    for (int i = 0; i < 6; i++) *--sp = 0;                               // rbp rbx r12 r13 r14 r15
    std::uint32_t mxcsr = 0x1F80;
    std::uint16_t fpucw = 0x037F;
    std::uint64_t csr = mxcsr | (static_cast<std::uint64_t>(fpucw) << 32);
    *--sp = csr;
    f.sp = sp;
#else
    if (!f.ucontextStorage) f.ucontextStorage = new ucontext_t();
    auto* uc = static_cast<ucontext_t*>(f.ucontextStorage);
    getcontext(uc);
    uc->uc_stack.ss_sp = f.stack;
    uc->uc_stack.ss_size = f.stackSize;
    uc->uc_link = nullptr;
    makecontext(uc, fiber_entry_uc, 0);
#endif
}

void resume(Fiber& f, BlockState* b) {
    tl_fiber = &f;
#if defined(__x86_64__)
    or1emu_switch(&b->schedulerSp, f.sp);
#else
    swapcontext(&b->schedulerContext, static_cast<ucontext_t*>(f.ucontextStorage));
#endif
    tl_fiber = nullptr;
}

/// Runs one block to completion on this OS thread. Returns false with b.error set on failure.
bool run_block(BlockState& b, dim3 block) {
    int n = static_cast<int>(block.x * block.y * block.z);
    if (static_cast<int>(b.fibers.size()) < n) b.fibers.resize(n);
    b.count = n;
    b.live = n;
    b.arrived = 0;
    b.gen = 0;
    b.aborted = false;
    b.warpCount = (n + 31) / 32;
    for (int w = 0; w < b.warpCount; w++) {
        b.warps[w].live = std::min(32, n - w * 32);
        b.warps[w].arrived = 0;
        b.warps[w].gen = 0;
        b.warps[w].mask = 0;
    }
    int i = 0;
    for (unsigned z = 0; z < block.z; z++)
        for (unsigned y = 0; y < block.y; y++)
            for (unsigned x = 0; x < block.x; x++, i++) {
                Fiber& f = b.fibers[i];
                f.tid = uint3{x, y, z};
                f.linear = i;
                f.warp = i / 32;
                f.lane = i % 32;
                f.state = Ready;
                prepare_fiber(f, &b);
            }
    for (;;) {
        bool progressed = false;
        for (int k = 0; k < n; k++) {
            Fiber& f = b.fibers[g_reverse ? n - 1 - k : k];
            if (f.state != Ready) continue;
            resume(f, &b);
            progressed = true;
            if (b.aborted) return false;
        }
        if (b.live == 0) return true;
        if (!progressed) {
            int atBlock = 0, atWarp = 0;
            for (int k = 0; k < n; k++) {
                if (b.fibers[k].state == AtBlockBarrier) atBlock++;
                if (b.fibers[k].state == AtWarpBarrier) atWarp++;
            }
            b.error = "deadlock: " + std::to_string(atBlock) + " thread(s) wait at __syncthreads and " + std::to_string(atWarp) +
                      " at a warp rendezvous, " + std::to_string(b.live) + " still running (a barrier in divergent code?)";
            return false;
        }
    }
}

// ------------------------------------------------------------------ registry

std::map<std::string, KernelInfo>& registry() {
    static std::map<std::string, KernelInfo> r;
    return r;
}

// ------------------------------------------------------------------ launch pool

struct Launch {
    const KernelInfo* kernel = nullptr;
    void** args = nullptr;
    dim3 grid, block;
    unsigned shared = 0;
    long total = 0;
    std::atomic<long> next{0};
    std::atomic<bool> failed{false};
    std::mutex errorMutex;
    std::string error;
};

thread_local BlockState* tl_state = nullptr;

void run_blocks(Launch& launch) {
    if (!tl_state) tl_state = new BlockState(); // kept for the thread's life: fiber stacks are reused
    BlockState& b = *tl_state;
    b.adapter = launch.kernel->adapter;
    b.args = launch.args;
    if (b.dynamicShared.size() < launch.shared + 16) b.dynamicShared.resize(launch.shared + 16);
    tl_block = &b;
    tl_blockDim = launch.block;
    tl_gridDim = launch.grid;
    tl_dynamicShared = b.dynamicShared.data();
    long gx = launch.grid.x, gy = launch.grid.y;
    for (;;) {
        if (launch.failed.load(std::memory_order_relaxed)) break;
        long id = launch.next.fetch_add(1);
        if (id >= launch.total) break;
        tl_blockIdx = uint3{static_cast<unsigned>(id % gx), static_cast<unsigned>(id / gx % gy), static_cast<unsigned>(id / (gx * gy))};
        // Shared memory starts as garbage on a GPU: NaN bytes make reads of unwritten shared memory visible.
        std::memset(b.dynamicShared.data(), 0xFF, launch.shared);
        bool ok;
        try {
            ok = run_block(b, launch.block);
        } catch (const std::exception& e) {
            b.error = e.what();
            ok = false;
        }
        if (!ok) {
            std::lock_guard<std::mutex> lock(launch.errorMutex);
            if (!launch.failed.exchange(true))
                launch.error = std::string("kernel ") + launch.kernel->name + " block (" + std::to_string(tl_blockIdx.x) + ", " +
                               std::to_string(tl_blockIdx.y) + ", " + std::to_string(tl_blockIdx.z) + "): " + b.error;
        }
    }
    tl_block = nullptr;
}

class Pool {
public:
    Pool() {
        int n = 0;
        if (const char* env = std::getenv("OR1_EMU_THREADS")) n = std::atoi(env);
        if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
        threads_ = std::clamp(n, 1, 64);
    }

    int threads() const { return threads_; }
    void set_threads(int n) {
        std::lock_guard<std::mutex> lock(launchMutex_);
        threads_ = std::clamp(n, 1, 64);
    }

    void run(Launch& launch) {
        std::lock_guard<std::mutex> lock(launchMutex_);
        int helpers = static_cast<int>(std::min<long>(threads_, launch.total)) - 1;
        if (helpers <= 0) {
            run_blocks(launch);
            return;
        }
        start_workers(helpers);
        {
            std::lock_guard<std::mutex> g(mutex_);
            current_ = &launch;
            wanted_ = helpers;
            active_ = helpers;
            generation_++;
        }
        wake_.notify_all();
        run_blocks(launch);
        std::unique_lock<std::mutex> g(mutex_);
        done_.wait(g, [&] { return active_ == 0; });
        current_ = nullptr;
    }

private:
    void start_workers(int n) {
        while (static_cast<int>(workers_.size()) < n) {
            int index = static_cast<int>(workers_.size());
            workers_.emplace_back([this, index] { worker(index); });
            workers_.back().detach();
        }
    }

    void worker(int index) {
        unsigned seen = 0;
        for (;;) {
            Launch* launch;
            {
                std::unique_lock<std::mutex> g(mutex_);
                wake_.wait(g, [&] { return generation_ != seen; });
                seen = generation_;
                if (index >= wanted_) continue;
                launch = current_;
            }
            run_blocks(*launch);
            {
                std::lock_guard<std::mutex> g(mutex_);
                if (--active_ == 0) done_.notify_all();
            }
        }
    }

    int threads_ = 1;
    std::mutex launchMutex_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    Launch* current_ = nullptr;
    unsigned generation_ = 0;
    int wanted_ = 0;
    int active_ = 0;
};

Pool& pool() {
    static Pool* p = new Pool(); // never destroyed: detached workers may outlive static destruction
    return *p;
}

int set_error(int code, const std::string& message) {
    tl_lastError = message;
    return code;
}

} // namespace

// ------------------------------------------------------------------ rendezvous points used by cuda_emu.h

void syncthreads() {
    Fiber* f = tl_fiber;
    BlockState* b = tl_block;
    b->arrived++;
    if (b->arrived >= b->live) {
        release_block_barrier(b);
        wait_here(f, b, Ready);
        return;
    }
    f->waitGen = b->gen;
    wait_here(f, b, AtBlockBarrier);
}

void syncwarp(unsigned mask) { warp_rendezvous(mask); }

unsigned long long warp_exchange(unsigned mask, unsigned long long value, int src) {
    Fiber* f = tl_fiber;
    WarpState& w = tl_block->warps[f->warp];
    // Double-buffered by generation: a lane can be at most one rendezvous ahead of the slowest
    // reader, so the buffer written at generation g + 1 is not the one still being read at g.
    int buffer = w.gen & 1;
    w.slots[buffer][f->lane] = value;
    warp_rendezvous(mask);
    if (src < 0 || src >= 32 || f->warp * 32 + src >= tl_block->count) src = f->lane;
    return w.slots[buffer][src];
}

unsigned warp_ballot(unsigned mask, int predicate) {
    Fiber* f = tl_fiber;
    WarpState& w = tl_block->warps[f->warp];
    int buffer = w.gen & 1;
    if (w.arrived == 0) w.ballots[buffer] = 0;
    if (predicate) w.ballots[buffer] |= 1u << f->lane;
    warp_rendezvous(mask);
    return w.ballots[buffer] & mask;
}

unsigned active_mask() {
    Fiber* f = tl_fiber;
    BlockState* b = tl_block;
    int lanes = std::min(32, b->count - f->warp * 32);
    unsigned m = 0;
    for (int l = 0; l < lanes; l++)
        if (b->fibers[f->warp * 32 + l].state != Done) m |= 1u << l;
    return m;
}

void trap(const char* what) {
    fail_block(tl_block, what);
    throw Abort{};
}

void register_kernel(const KernelInfo& info) { registry()[info.name] = info; }

} // namespace or1emu

// ------------------------------------------------------------------ C API

using namespace or1emu;

extern "C" {

__attribute__((visibility("default"))) int or1_emu_version() { return 1; }

__attribute__((visibility("default"))) const char* or1_emu_last_error() { return tl_lastError.c_str(); }

__attribute__((visibility("default"))) const void* or1_emu_find_kernel(const char* name) {
    auto& r = registry();
    auto it = r.find(name ? name : "");
    return it == r.end() ? nullptr : &it->second;
}

__attribute__((visibility("default"))) int or1_emu_kernel_count() { return static_cast<int>(registry().size()); }

__attribute__((visibility("default"))) const char* or1_emu_kernel_name(int index) {
    auto& r = registry();
    if (index < 0 || index >= static_cast<int>(r.size())) return nullptr;
    auto it = r.begin();
    std::advance(it, index);
    return it->second.name;
}

__attribute__((visibility("default"))) int or1_emu_kernel_arity(const void* kernel) {
    return kernel ? static_cast<const KernelInfo*>(kernel)->arity : -1;
}

/// 0: blocks' threads run in ascending order between rendezvous points; 1: descending (makes races visible).
__attribute__((visibility("default"))) void or1_emu_set_schedule(int reverse) { g_reverse = reverse != 0; }

__attribute__((visibility("default"))) void or1_emu_set_threads(int threads) { pool().set_threads(threads); }

__attribute__((visibility("default"))) int or1_emu_threads() { return pool().threads(); }

/// Launches a kernel found by or1_emu_find_kernel, synchronously. argCount/argSizes (sizes in bytes
/// of each argument value) are checked against the kernel's signature when argCount >= 0.
/// Returns 0, or 1 unknown kernel, 2 invalid configuration, 3 argument mismatch, 4 kernel failure.
__attribute__((visibility("default"))) int or1_emu_launch_kernel(const void* kernel, unsigned gx, unsigned gy, unsigned gz,
                                                                 unsigned bx, unsigned by, unsigned bz, unsigned sharedBytes,
                                                                 void** args, int argCount, const int* argSizes) {
    if (!kernel) return set_error(1, "no kernel (null handle)");
    const auto* info = static_cast<const KernelInfo*>(kernel);
    std::string name = info->name;
    if (gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 || gz > 65535)
        return set_error(2, name + ": invalid grid (" + std::to_string(gx) + ", " + std::to_string(gy) + ", " + std::to_string(gz) + ")");
    unsigned long long threads = static_cast<unsigned long long>(bx) * by * bz;
    if (bx == 0 || by == 0 || bz == 0 || bx > 1024 || by > 1024 || bz > 64 || threads > 1024)
        return set_error(2, name + ": invalid block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " + std::to_string(bz) + ")");
    if (sharedBytes > MaxSharedBytes)
        return set_error(2, name + ": " + std::to_string(sharedBytes) + " bytes of dynamic shared memory exceed the device limit");
    if (argCount >= 0) {
        if (argCount != info->arity)
            return set_error(3, name + ": launched with " + std::to_string(argCount) + " arguments, the kernel takes " + std::to_string(info->arity));
        for (int i = 0; argSizes && i < argCount; i++)
            if (argSizes[i] != info->argSizes[i])
                return set_error(3, name + ": argument " + std::to_string(i) + " is " + std::to_string(argSizes[i]) +
                                        " bytes, the kernel's parameter is " + std::to_string(info->argSizes[i]));
    }
    Launch launch;
    launch.kernel = info;
    launch.args = args;
    launch.grid = dim3(gx, gy, gz);
    launch.block = dim3(bx, by, bz);
    launch.shared = sharedBytes;
    launch.total = static_cast<long>(gx) * gy * gz;
    pool().run(launch);
    if (launch.failed) return set_error(4, launch.error);
    return 0;
}

/// The cuLaunchKernel-shaped entry point: kernel by name, args = pointers to each argument value.
__attribute__((visibility("default"))) int or1_emu_launch(const char* kernel, unsigned gx, unsigned gy, unsigned gz,
                                                          unsigned bx, unsigned by, unsigned bz, unsigned sharedBytes, void** args) {
    const void* k = or1_emu_find_kernel(kernel);
    if (!k) return set_error(1, std::string("unknown kernel '") + (kernel ? kernel : "(null)") + "'");
    return or1_emu_launch_kernel(k, gx, gy, gz, bx, by, bz, sharedBytes, args, -1, nullptr);
}

} // extern "C"
