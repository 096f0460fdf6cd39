// emu_runtime.cpp — fibers, block scheduler, launch pool, kernel registry and the C API of or1_emu.
// See cuda_emu.h for the model. Limits checked at launch are CUDA's (sm_80/sm_90), so a launch
// configuration that a GPU would reject fails here too: the block shape and a block above the kernel's
// __launch_bounds__, dynamic shared memory as the driver enforces it (48 KB by default, more only after
// cuFuncSetAttribute's opt-in, up to the device's maximum), and warp collectives whose member mask names a
// lane that has exited or does not exist.
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
#include <link.h>
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
constexpr std::size_t AsanStackTopUnpoison = 32 * 1024;  // fiber_main's frame and what ASan calls below it

// Shared memory per block, as the driver counts it (src/OR1.Native/Kernels/SharedMemoryLimits.cs holds
// the same numbers and the same messages for the Cuda runtime). Without opt-in a kernel may use 48 KB of
// dynamic shared memory; cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) raises the
// kernel's limit up to the device's opt-in maximum. On a GPU static __shared__ arrays count against the
// same limits (static + dynamic); the emulator cannot see a kernel's static size (its __shared__ arrays
// are thread_locals with no per-kernel record), so it checks dynamic shared memory alone and leaves the
// static part to ptxas and the checks of the compiled code.
constexpr unsigned DefaultDynamicSharedBytes = 48 * 1024;  // 49,152
constexpr unsigned Sm80OptInSharedBytes = 163 * 1024;      // 166,912 (A100)
constexpr unsigned Sm90OptInSharedBytes = 227 * 1024;      // 232,448 (H100, H200)

struct Abort {};

// ------------------------------------------------------------------ AddressSanitizer (the emulator's memcheck)
// Built with -fsanitize=address (libor1_emu_memcheck.so), the emulator is our compute-sanitizer memcheck: device
// allocations are malloc'd exactly, so a kernel reading or writing past one stops with the access and the stack,
// and the slack of the dynamic shared buffer beyond the launch's bytes is poisoned. ASan must be told about every
// stack switch (the fibers), or it takes a fiber's stack for a wild one and reports false overflows.
#if defined(__SANITIZE_ADDRESS__)
}  // namespace
extern "C" {
void __sanitizer_start_switch_fiber(void** fakeStackSave, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fakeStackSave, const void** bottomOld, std::size_t* sizeOld);
void __asan_poison_memory_region(void const volatile* address, std::size_t size);
void __asan_unpoison_memory_region(void const volatile* address, std::size_t size);
}
namespace {
/// Before a switch to the stack [bottom, bottom + size); fakeStackSave null: the leaving fiber never returns.
inline void asan_leaving(void** fakeStackSave, const void* bottom, std::size_t size) { __sanitizer_start_switch_fiber(fakeStackSave, bottom, size); }
/// First thing after a switch lands; the stack switched away from comes back in bottomOld/sizeOld.
inline void asan_arrived(void* fakeStackSave, const void** bottomOld = nullptr, std::size_t* sizeOld = nullptr) {
    __sanitizer_finish_switch_fiber(fakeStackSave, bottomOld, sizeOld);
}
inline void asan_poison(const void* address, std::size_t size) { __asan_poison_memory_region(address, size); }
inline void asan_unpoison(const void* address, std::size_t size) { __asan_unpoison_memory_region(address, size); }
#else
inline void asan_leaving(void**, const void*, std::size_t) {}
inline void asan_arrived(void*, const void** = nullptr, std::size_t* = nullptr) {}
inline void asan_poison(const void*, std::size_t) {}
inline void asan_unpoison(const void*, std::size_t) {}
#endif

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

/// Rendezvous state of one warp. One warp collective is in progress at a time: the lanes named by its
/// member mask arrive one by one and all leave when the last of them arrives. A mask may name only lanes
/// that exist and are still running (checked on every arrival and on every exit), so "every named lane
/// has arrived" is the whole release condition.
struct WarpState {
    unsigned existing = 0;     // lanes that exist: all 32 but in the partial last warp of a block
    unsigned exited = 0;       // lanes that have returned from the kernel
    unsigned arrived = 0;      // lanes waiting at the rendezvous in progress
    unsigned gen = 0;
    unsigned mask = 0;         // its member mask
    const char* what = "";     // its intrinsic, for the messages and to catch lanes at different collectives
    unsigned long long slots[2][32];
    unsigned ballots[2];
    // A .sync.aligned instruction in progress (ldmatrix, mma): its call site, null for the other collectives, so
    // that lanes at two different mma statements (a diverged warp) are told apart; and the operands each lane
    // deposits and the results the last lane to arrive computes for every lane. Double-buffered by generation,
    // like slots.
    const char* siteFile = nullptr;
    int siteLine = 0;
    unsigned operands[2][32][10];
    unsigned results[2][32][4];
};

/// A .sync.aligned warp instruction at one call site (kernels/mma.cuh): all 32 lanes of the warp execute it
/// together. `complete` runs in the last lane to arrive, before any lane resumes, and executes the instruction
/// for the whole warp from the operands in w.operands[buffer] / w.slots[buffer] into w.results[buffer]: a GPU
/// executes it at once, so no lane may run on (and, say, overwrite the shared tile an ldmatrix reads) before
/// every lane's part is done.
struct AlignedOp {
    const char* file;
    int line;
    void (*complete)(WarpState& w, int buffer, const void* context);
    const void* context;
};

/// One cp.async in flight: 16 bytes to dst from src (null: zero-fill), in commit group `group` of its thread.
struct AsyncCopy {
    unsigned char* dst;
    const unsigned char* src;
    long group;
};

/// A thread's cp.async state: the copies not yet performed, in issue order, and the id of the group that the
/// next cp.async.commit_group closes (groups 0 .. openGroup - 1 are committed).
struct AsyncCopies {
    std::vector<AsyncCopy> pending;
    long openGroup = 0;
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
    void* schedulerFakeStack = nullptr;        // AddressSanitizer's bookkeeping of the scheduler's stack
    const void* schedulerStackBottom = nullptr;
    std::size_t schedulerStackSize = 0;
#if !defined(__x86_64__)
    ucontext_t schedulerContext;
#endif
    Adapter adapter = nullptr;
    void** args = nullptr;
    bool aborted = false;
    std::string error;
    std::vector<unsigned char> dynamicShared;
    unsigned dynamicSharedBytes = 0;       // the launch's dynamic shared memory (dynamicShared has slack beyond)
    std::vector<AsyncCopies> asyncCopies;  // per thread (Fiber::linear)
};

namespace {

bool g_reverse = false;
std::mutex g_errorMutex;
thread_local std::string tl_lastError;

/// The emulated device's architecture (80 or 90): it fixes the opt-in maximum of shared memory per block.
/// OR1_EMU_ARCH sets it for a whole process (a test run as an A100); or1_emu_set_device_arch changes it.
int initial_arch() {
    const char* env = std::getenv("OR1_EMU_ARCH");
    int arch = env ? std::atoi(env) : 90;
    return arch == 80 ? 80 : 90;
}
std::atomic<int> g_arch{initial_arch()};

unsigned opt_in_shared_bytes(int arch) { return arch == 80 ? Sm80OptInSharedBytes : Sm90OptInSharedBytes; }

/// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES per kernel, where it was set (process-wide, like the
/// attribute of a function in the primary context).
std::mutex g_attributeMutex;
std::map<const KernelInfo*, unsigned> g_maxDynamicShared;

unsigned max_dynamic_shared(const KernelInfo* kernel) {
    std::lock_guard<std::mutex> lock(g_attributeMutex);
    auto it = g_maxDynamicShared.find(kernel);
    return it == g_maxDynamicShared.end() ? DefaultDynamicSharedBytes : it->second;
}

// The messages of SharedMemoryLimits.cs, word for word (a .NET test compares them).
const char* const AttributeName = "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES";

std::string launch_above_limit_message(unsigned bytes, unsigned limit) {
    std::string b = std::to_string(bytes);
    if (limit == DefaultDynamicSharedBytes)
        return "launch with " + b + " bytes of dynamic shared memory, above the " + std::to_string(limit) +
               " bytes a kernel may use by default; a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless the kernel's " + AttributeName +
               " is set to at least " + b + " first (cuFuncSetAttribute; IKernelRuntime.EnsureDynamicSharedMemory)";
    return "launch with " + b + " bytes of dynamic shared memory, above the " + std::to_string(limit) + " bytes its " + AttributeName +
           " allows; a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless the attribute is raised to at least " + b +
           " first (cuFuncSetAttribute; IKernelRuntime.EnsureDynamicSharedMemory)";
}

/// A block above the kernel's __launch_bounds__: ptxas fitted the kernel's registers to the bound, so the driver
/// refuses any larger block (the kernel's CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK is the bound).
std::string launch_above_bounds_message(unsigned bx, unsigned by, unsigned bz, unsigned long long threads, int maxThreads) {
    std::string bound = std::to_string(maxThreads);
    return "launch with block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " + std::to_string(bz) + ") = " +
           std::to_string(threads) + " threads, above the " + bound + " threads per block of the kernel's __launch_bounds__ (its" +
           " CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK); a GPU refuses it (CUDA_ERROR_INVALID_VALUE): launch at most " + bound +
           " threads per block, or raise the bound in the kernel's OR1_BOUNDED_KERNEL";
}

std::string launch_above_device_message(unsigned bytes, unsigned deviceMax, int arch) {
    return "launch with " + std::to_string(bytes) + " bytes of dynamic shared memory, above the " + std::to_string(deviceMax) +
           " bytes per block that sm_" + std::to_string(arch) + " allows even with " + AttributeName +
           "; a GPU refuses it (CUDA_ERROR_INVALID_VALUE)";
}

std::string attribute_above_device_message(long long bytes, unsigned deviceMax, int arch) {
    return std::string(AttributeName) + " = " + std::to_string(bytes) + " is above the " + std::to_string(deviceMax) +
           " bytes of shared memory per block that sm_" + std::to_string(arch) +
           " allows with opt-in; cuFuncSetAttribute refuses it (CUDA_ERROR_INVALID_VALUE)";
}

/// From a fiber to the scheduler; `finished`: the fiber never resumes (ASan drops its fake stack).
void switch_to_scheduler(Fiber* f, BlockState* b, bool finished = false) {
    asan_leaving(finished ? nullptr : &f->asanFakeStack, b->schedulerStackBottom, b->schedulerStackSize);
#if defined(__x86_64__)
    or1emu_switch(&f->sp, b->schedulerSp);
#else
    swapcontext(static_cast<ucontext_t*>(f->ucontextStorage), &b->schedulerContext);
#endif
    asan_arrived(f->asanFakeStack);
}

void wait_here(Fiber* f, BlockState* b, int state) {
    f->state = state;
    switch_to_scheduler(f, b);
}

std::string hex(unsigned v) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%08x", v);
    return text;
}

/// "lane 5", "lanes 8-31", "lanes 0, 3, 16-19".
std::string describe_lanes(unsigned lanes) {
    std::string text;
    int count = 0;
    for (int l = 0; l < 32;) {
        if (!(lanes >> l & 1u)) {
            l++;
            continue;
        }
        int end = l;
        while (end + 1 < 32 && (lanes >> (end + 1) & 1u)) end++;
        if (!text.empty()) text += ", ";
        text += end == l ? std::to_string(l) : std::to_string(l) + "-" + std::to_string(end);
        count += end - l + 1;
        l = end + 1;
    }
    return (count == 1 ? "lane " : "lanes ") + text;
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
    w.mask = 0;
    int lanes = std::min(32, b->count - warp * 32);
    for (int l = 0; l < lanes; l++) {
        Fiber& f = b->fibers[warp * 32 + l];
        if (f.state == AtWarpBarrier) f.state = Ready;
    }
}

void fail_block(BlockState* b, const std::string& message) {
    if (!b->aborted) {
        b->aborted = true;
        b->error = message;
    }
}

/// Fails the launch from inside a fiber: the message is prefixed with the kernel and block by run_blocks.
[[noreturn]] void warp_error(int warp, const std::string& message) {
    fail_block(tl_block, "warp " + std::to_string(warp) + ": " + message);
    throw Abort{};
}

/// "tiles.cuh:54" for a call site (the file's name without its directories).
std::string site_text(const char* file, int line) {
    const char* slash = file ? std::strrchr(file, '/') : nullptr;
    return std::string(slash ? slash + 1 : (file ? file : "?")) + ":" + std::to_string(line);
}

/// " at tiles.cuh:54" where the collective in progress is a .sync.aligned instruction, "" otherwise.
std::string where(const WarpState& w) { return w.siteFile ? " at " + site_text(w.siteFile, w.siteLine) : std::string(); }

bool same_site(const WarpState& w, const AlignedOp& op) {
    return w.siteLine == op.line && w.siteFile && (w.siteFile == op.file || std::strcmp(w.siteFile, op.file) == 0);
}

/// The rules of a .sync.aligned warp instruction (ldmatrix, mma), broken: on a GPU all 32 lanes of the warp must
/// execute the same instruction together; an exited, absent or diverged lane makes the result undefined (or hangs).
[[noreturn]] void aligned_error(const BlockState* b, const WarpState& w, int warp, int lane, const char* what, const AlignedOp& op) {
    std::string who = "lane " + std::to_string(lane) + " reaches " + what + " at " + site_text(op.file, op.line);
    const char* rule = ", a .sync.aligned warp instruction that all 32 lanes of the warp must execute together";
    if (~w.existing)
        warp_error(warp, who + rule + ", but the block has " + std::to_string(b->count) + " threads, so warp " + std::to_string(warp) +
                             " has only " + describe_lanes(w.existing) + " (undefined behaviour on a GPU: launch whole warps)");
    if (w.exited)
        warp_error(warp, who + rule + ", but " + describe_lanes(w.exited) + " exited before it (undefined behaviour on a GPU:" +
                             " every lane must stay to the warp's last mma/ldmatrix)");
    warp_error(warp, who + " while " + describe_lanes(w.arrived) + " wait at " + w.what + where(w) + ": the warp has diverged" + rule +
                         " at the same statement (undefined behaviour on a GPU)");
}

/// Arrives at a warp collective (`what`, with member mask `mask`); returns once every lane the mask
/// names has arrived. On a GPU a mask that names a lane which has exited or does not exist (the last,
/// partial warp of a block whose size is not a multiple of 32), a calling lane missing from its own mask,
/// or lanes of one warp at different collectives at once are undefined behaviour: here they fail the launch.
/// `op` (a .sync.aligned instruction; mask is then the full warp) adds the call site to "the same collective"
/// and runs op->complete in the last lane to arrive.
void warp_rendezvous(unsigned mask, const char* what, const AlignedOp* op = nullptr) {
    Fiber* f = tl_fiber;
    BlockState* b = tl_block;
    int warp = f->warp;
    WarpState& w = b->warps[warp];
    unsigned self = 1u << f->lane;
    // Plain bit tests on the hot path; the messages are built only when a rule is broken.
    bool sameCall = w.arrived == 0 || (w.mask == mask && (w.what == what || std::strcmp(w.what, what) == 0) &&
                                       (op ? same_site(w, *op) : w.siteFile == nullptr));
    if (!(mask & self) || (mask & ~w.existing) || (mask & w.exited) || !sameCall) {
        if (op) aligned_error(b, w, warp, f->lane, what, *op);
        std::string lane = "lane " + std::to_string(f->lane), call = std::string(what) + " with mask " + hex(mask);
        if (!(mask & self)) warp_error(warp, lane + " calls " + call + ", which does not name it: a calling lane must be in the mask");
        if (mask & ~w.existing)
            warp_error(warp, lane + " reaches " + call + ", which names nonexistent " + describe_lanes(mask & ~w.existing) + ": the block has " +
                                 std::to_string(b->count) + " threads, so warp " + std::to_string(warp) + " has only " + describe_lanes(w.existing) +
                                 " (undefined behaviour on a GPU: build the mask from the lanes that exist)");
        if (mask & w.exited)
            warp_error(warp, lane + " reaches " + call + ", which names exited " + describe_lanes(mask & w.exited) +
                                 " (undefined behaviour on a GPU: a mask may name only lanes that are still running)");
        warp_error(warp, lane + " reaches " + call + " while " + describe_lanes(w.arrived) + " wait at " + w.what + where(w) + " with mask " +
                             hex(w.mask) +
                             " (lanes of one warp at different collectives at once are not emulated; on a GPU every lane a mask names"
                             " must execute the same intrinsic with the same mask)");
    }
    if (w.arrived == 0) {
        w.mask = mask;
        w.what = what;
        w.siteFile = op ? op->file : nullptr;
        w.siteLine = op ? op->line : 0;
    }
    w.arrived |= self;
    if (w.arrived == w.mask) {
        if (op && op->complete) op->complete(w, static_cast<int>(w.gen & 1), op->context);
        release_warp_barrier(b, warp);
        // The last lane also yields, so that lanes resume in schedule order.
        wait_here(f, b, Ready);
        return;
    }
    f->waitGen = w.gen;
    wait_here(f, b, AtWarpBarrier);
}

/// A thread that returns with cp.async copies in flight: on a GPU they land whenever they land, ordered before
/// nothing (no wait_group retired them, so no barrier publishes them). Always a missing cp_async_wait.
void check_async_copies_at_exit(BlockState* b, const Fiber* f) {
    const AsyncCopies& a = b->asyncCopies[f->linear];
    if (a.pending.empty()) return;
    std::size_t open = 0;
    for (const AsyncCopy& c : a.pending) open += c.group == a.openGroup;
    std::string text = "warp " + std::to_string(f->warp) + ": lane " + std::to_string(f->lane) + " exits with " + std::to_string(a.pending.size()) +
                       " cp.async cop" + (a.pending.size() == 1 ? "y" : "ies") + " still pending";
    if (open) text += " (" + std::to_string(open) + " never committed by cp_async_commit)";
    fail_block(b, text + ": every copy must be retired by cp_async_wait<N> (cp.async.wait_group) before its data is used or the thread exits");
}

void fiber_main() {
    BlockState* b = tl_block;
    Fiber* f = tl_fiber;
    asan_arrived(nullptr, &b->schedulerStackBottom, &b->schedulerStackSize); // a fresh stack: the scheduler's bounds
    try {
        b->adapter(b->args);
        check_async_copies_at_exit(b, f);
    } catch (const Abort&) {
    } catch (const std::exception& e) {
        fail_block(b, std::string("kernel threw: ") + e.what());
    } catch (...) {
        fail_block(b, "kernel threw an unknown exception");
    }
    f->state = Done;
    b->live--;
    // An exited thread no longer holds back a barrier that everyone else has reached (sm_70+ semantics).
    if (b->arrived > 0 && b->arrived >= b->live) release_block_barrier(b);
    // But a warp collective whose mask names it can no longer complete: on a GPU its waiting lanes would
    // read an exited lane's value or hang.
    WarpState& w = b->warps[f->warp];
    w.exited |= 1u << f->lane;
    if (w.arrived != 0 && (w.mask >> f->lane & 1u)) {
        std::string text = "warp " + std::to_string(f->warp) + ": lane " + std::to_string(f->lane) + " exits while " + describe_lanes(w.arrived) +
                           " wait at " + w.what;
        if (w.siteFile)
            fail_block(b, text + where(w) + ", a .sync.aligned warp instruction that all 32 lanes of the warp must execute together" +
                              " (undefined behaviour on a GPU: every lane must stay to the warp's last mma/ldmatrix)");
        else
            fail_block(b, text + " with mask " + hex(w.mask) +
                              ", which names it (undefined behaviour on a GPU: a mask may name only lanes that are still running)");
    }
    switch_to_scheduler(f, b, true);
    std::abort(); // a finished fiber is never resumed
}

#if defined(__x86_64__)
extern "C" void or1emu_fiber_entry() { fiber_main(); }
#else
void fiber_entry_uc() { fiber_main(); }
#endif

void prepare_fiber(Fiber& f, BlockState* b) {
    f.asanFakeStack = nullptr;
    // A finished fiber's fiber_main never returned, so its frame's redzones stay poisoned near the top of the stack this
    // fiber reuses, where ASan's own calls at the next entry put their locals (the memcheck build; a no-op otherwise).
    if (f.stack) asan_unpoison(f.stack + f.stackSize - AsanStackTopUnpoison, AsanStackTopUnpoison);
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
    asan_leaving(&b->schedulerFakeStack, f.stack, f.stackSize);
#if defined(__x86_64__)
    or1emu_switch(&b->schedulerSp, f.sp);
#else
    swapcontext(&b->schedulerContext, static_cast<ucontext_t*>(f.ucontextStorage));
#endif
    asan_arrived(b->schedulerFakeStack);
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
        int lanes = std::min(32, n - w * 32);
        b.warps[w].existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
        b.warps[w].exited = 0;
        b.warps[w].arrived = 0;
        b.warps[w].gen = 0;
        b.warps[w].mask = 0;
        b.warps[w].what = "";
        b.warps[w].siteFile = nullptr;
        b.warps[w].siteLine = 0;
    }
    // cp.async state of a block that failed before its threads waited is dropped with the block.
    if (static_cast<int>(b.asyncCopies.size()) < n) b.asyncCopies.resize(n);
    for (int t = 0; t < n; t++) {
        b.asyncCopies[t].pending.clear();
        b.asyncCopies[t].openGroup = 0;
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
            // Name the warp collectives that wait (lanes of a warp split between an mma and a __syncthreads, say).
            for (int w = 0; w < b.warpCount; w++)
                if (b.warps[w].arrived)
                    b.error += "; warp " + std::to_string(w) + ": " + describe_lanes(b.warps[w].arrived) + " wait at " + b.warps[w].what +
                               where(b.warps[w]);
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
    // Under ASan the bytes past the launch's dynamic shared memory are poisoned: on a GPU they are outside the block's
    // shared window (an "out of range shared address" fault), here they would be the buffer's slack.
    asan_unpoison(b.dynamicShared.data(), b.dynamicShared.size());
    if (b.dynamicShared.size() < launch.shared + 16) b.dynamicShared.resize(launch.shared + 16);
    asan_poison(b.dynamicShared.data() + launch.shared, b.dynamicShared.size() - launch.shared);
    tl_block = &b;
    tl_blockDim = launch.block;
    tl_gridDim = launch.grid;
    tl_dynamicShared = b.dynamicShared.data();
    b.dynamicSharedBytes = launch.shared;
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
            // The block's fibers were abandoned mid-frame anywhere on their stacks: all of them are unpoisoned.
            for (const Fiber& f : b.fibers)
                if (f.stack) asan_unpoison(f.stack, f.stackSize);
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

void syncwarp(unsigned mask) { warp_rendezvous(mask, "__syncwarp"); }

unsigned long long warp_exchange(unsigned mask, unsigned long long value, int src, const char* what) {
    Fiber* f = tl_fiber;
    WarpState& w = tl_block->warps[f->warp];
    // Double-buffered by generation: a lane can be at most one rendezvous ahead of the slowest
    // reader, so the buffer written at generation g + 1 is not the one still being read at g.
    int buffer = w.gen & 1;
    w.slots[buffer][f->lane] = value;
    warp_rendezvous(mask, what);
    if (src < 0 || src >= 32) src = f->lane;
    // A lane outside the mask took no part: a GPU gives an undefined value. All-ones bits (NaN, -1) make
    // a result that depends on it visible, while a kernel that discards such reads (the top lanes of a
    // shuffle-down over a partial mask) stays correct.
    if (!(mask >> src & 1u)) return ~0ull;
    return w.slots[buffer][src];
}

unsigned warp_ballot(unsigned mask, int predicate, const char* what) {
    Fiber* f = tl_fiber;
    WarpState& w = tl_block->warps[f->warp];
    int buffer = w.gen & 1;
    if (w.arrived == 0) w.ballots[buffer] = 0;
    if (predicate) w.ballots[buffer] |= 1u << f->lane;
    warp_rendezvous(mask, what);
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

// ------------------------------------------------------------------ warp matrix instructions and cp.async
//
// The emulations behind kernels/mma.cuh, with the PTX ISA's semantics: "Warp-level matrix load instruction:
// ldmatrix", "Matrix fragments for mma.m16n8k16 with floating point type", "Matrix fragments for mma.m16n8k8"
// (.tf32) and "Data movement: cp.async". What a GPU leaves undefined fails the launch here, naming the kernel,
// block, warp, lane and instruction.

namespace {

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

std::string pointer_text(std::uintptr_t p) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(p));
    return text;
}

/// [begin, end) of this library's thread-local segment for the calling OS thread: the kernels' static __shared__
/// arrays are `static thread_local` (cuda_emu.h), so they all live there (next to the emulator's own few
/// thread_locals, which kernels cannot name). Found once per OS thread through dl_iterate_phdr's dlpi_tls_data
/// (glibc 2.26+); elsewhere it stays empty and only dynamic shared memory counts as shared memory.
struct TlsRange {
    std::uintptr_t begin = 0, end = 0;
    bool known = false;
};
thread_local TlsRange tl_staticShared;

struct TlsSearch {
    std::uintptr_t code;
    TlsRange* range;
};

int find_own_tls(dl_phdr_info* info, std::size_t size, void* data) {
    auto* search = static_cast<TlsSearch*>(data);
    bool ours = false;
    std::size_t tlsBytes = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const auto& ph = info->dlpi_phdr[i];
        std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && search->code >= lo && search->code - lo < ph.p_memsz) ours = true;
        if (ph.p_type == PT_TLS) tlsBytes = ph.p_memsz;
    }
    if (!ours) return 0;
#if defined(__GLIBC__)
    if (size >= offsetof(dl_phdr_info, dlpi_tls_data) + sizeof(void*) && info->dlpi_tls_data && tlsBytes) {
        search->range->begin = address(info->dlpi_tls_data);
        search->range->end = search->range->begin + tlsBytes;
    }
#else
    (void)size;
    (void)tlsBytes;
#endif
    return 1;
}

const TlsRange& static_shared_range() {
    if (!tl_staticShared.known) {
        // Any address in this library's code identifies the module (a conversion POSIX guarantees).
        TlsSearch search{reinterpret_cast<std::uintptr_t>(&find_own_tls), &tl_staticShared};
        dl_iterate_phdr(find_own_tls, &search);
        tl_staticShared.known = true;
    }
    return tl_staticShared;
}

/// [p, p + n) lies inside one shared-memory region: the block's dynamic shared memory or the static __shared__ arrays.
bool in_shared(const BlockState* b, std::uintptr_t p, std::size_t n) {
    std::uintptr_t base = address(b->dynamicShared.data());
    if (p >= base && p - base <= b->dynamicSharedBytes && n <= b->dynamicSharedBytes - (p - base)) return true;
    const TlsRange& s = static_shared_range();
    return p >= s.begin && p < s.end && n <= s.end - p;
}

/// Whether any byte of [p, p + n) is shared memory (a cp.async source must not be).
bool touches_shared(const BlockState* b, std::uintptr_t p, std::size_t n) {
    std::uintptr_t base = address(b->dynamicShared.data());
    if (b->dynamicSharedBytes && p < base + b->dynamicSharedBytes && p + n > base) return true;
    const TlsRange& s = static_shared_range();
    return p < s.end && p + n > s.begin;
}

std::string shared_regions(const BlockState* b) {
    std::string text = "the block's dynamic shared memory is " + std::to_string(b->dynamicSharedBytes) + " bytes at " +
                       pointer_text(address(b->dynamicShared.data()));
    const TlsRange& s = static_shared_range();
    if (s.end > s.begin)
        text += ", static __shared__ arrays lie in " + pointer_text(s.begin) + " .. " + pointer_text(s.end);
    else
        text += "; static __shared__ arrays cannot be located on this platform, so stage tiles in dynamic shared memory";
    return text;
}

[[noreturn]] void lane_error(const Fiber* f, const std::string& message) {
    warp_error(f->warp, "lane " + std::to_string(f->lane) + ": " + message);
}

// ---------------------------------------------------------------- cp.async

/// PTX "cp.async": the copy is asynchronous, performed at the cp.async.wait_group that retires its group. Until
/// then the destination holds 0xFF bytes (NaN as fp32 and bf16), so a read that forgot the wait sees NaN where a
/// GPU would return whatever the bytes were before (stale data from the previous tile, say).
const char* const CpAsyncName = "cp.async.cg.shared.global [dst], [src], 16";

void perform(const AsyncCopy& c) {
    if (c.src)
        std::memcpy(c.dst, c.src, 16);
    else
        std::memset(c.dst, 0, 16);
}

} // namespace

void misaligned_access(const void* p, unsigned bytes, const char* what) {
    lane_error(tl_fiber, std::string(what) + ": address " + pointer_text(address(p)) + " is not " + std::to_string(bytes) +
                             "-byte aligned (a GPU faults with CUDA_ERROR_MISALIGNED_ADDRESS: split the range into an aligned body " +
                             "and scalar ends, or take the scalar path)");
}

void cp_async_16(void* sharedDst, const void* globalSrc, bool valid) {
    Fiber* f = tl_fiber;
    BlockState* b = tl_block;
    std::uintptr_t dst = address(sharedDst), src = address(globalSrc);
    std::string what = std::string(CpAsyncName) + (valid ? "" : ", 0 (zero-fill)");
    if (dst % 16) lane_error(f, what + ": destination " + pointer_text(dst) + " is not 16-byte aligned (both addresses must be aligned to the 16 bytes copied)");
    if (!in_shared(b, dst, 16))
        lane_error(f, what + ": destination " + pointer_text(dst) + " .. +16 is not in shared memory (" + shared_regions(b) +
                          "); cp.async copies global memory into shared memory only");
    if (!globalSrc)
        lane_error(f, what + ": source is a null pointer (even a zero-fill copy, which reads nothing, takes a valid global address)");
    if (src % 16) lane_error(f, what + ": source " + pointer_text(src) + " is not 16-byte aligned (both addresses must be aligned to the 16 bytes copied)");
    if (touches_shared(b, src, 16)) lane_error(f, what + ": source " + pointer_text(src) + " is in shared memory; cp.async reads global memory");
    if (src >= address(f->stack) && src - address(f->stack) < f->stackSize)
        lane_error(f, what + ": source " + pointer_text(src) + " is the thread's local memory (a local variable); cp.async reads global memory");
    std::memset(sharedDst, 0xFF, 16);
    AsyncCopies& a = b->asyncCopies[f->linear];
    a.pending.push_back(AsyncCopy{static_cast<unsigned char*>(sharedDst), valid ? static_cast<const unsigned char*>(globalSrc) : nullptr, a.openGroup});
}

void cp_async_commit() { tl_block->asyncCopies[tl_fiber->linear].openGroup++; }

void cp_async_wait(int pendingGroups) {
    AsyncCopies& a = tl_block->asyncCopies[tl_fiber->linear];
    // Committed groups are 0 .. openGroup - 1; all but the newest pendingGroups of them complete now, oldest
    // first. Copies not yet committed (group openGroup) are not waited for, as on a GPU.
    long retireBelow = a.openGroup - pendingGroups;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < a.pending.size(); i++) {
        if (a.pending[i].group < retireBelow)
            perform(a.pending[i]);
        else
            a.pending[kept++] = a.pending[i];
    }
    a.pending.resize(kept);
}

// ---------------------------------------------------------------- ldmatrix

namespace {

/// PTX "ldmatrix": for matrix i the lanes 8i .. 8i + 7 give the addresses of its rows (16 contiguous bytes: eight
/// b16 elements); lane l receives in register i row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of that matrix, the
/// lower column in the low half. With .trans it receives the same positions of the transposed matrix: elements
/// (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4).
const char* const LdmatrixNames[2][3] = {
    {"ldmatrix.sync.aligned.m8n8.x1.shared.b16", "ldmatrix.sync.aligned.m8n8.x2.shared.b16", "ldmatrix.sync.aligned.m8n8.x4.shared.b16"},
    {"ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16", "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16",
     "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"}};

struct LdmatrixShape {
    int matrices;
    bool trans;
};

unsigned short load_b16(std::uintptr_t row, int column) {
    unsigned short v;
    std::memcpy(&v, reinterpret_cast<const unsigned char*>(row) + 2 * column, 2);
    return v;
}

void ldmatrix_complete(WarpState& w, int buffer, const void* context) {
    const auto* shape = static_cast<const LdmatrixShape*>(context);
    const unsigned long long* rows = w.slots[buffer];
    for (int m = 0; m < shape->matrices; m++)
        for (int lane = 0; lane < 32; lane++) {
            int r = lane / 4, c = 2 * (lane % 4);
            unsigned short lo, hi;
            if (!shape->trans) {
                lo = load_b16(rows[8 * m + r], c);
                hi = load_b16(rows[8 * m + r], c + 1);
            } else {
                lo = load_b16(rows[8 * m + c], r);
                hi = load_b16(rows[8 * m + c + 1], r);
            }
            w.results[buffer][lane][m] = static_cast<unsigned>(lo) | static_cast<unsigned>(hi) << 16;
        }
}

} // namespace

void ldmatrix(unsigned* regs, int matrices, bool trans, const void* row, const char* file, int line) {
    Fiber* f = tl_fiber;
    BlockState* b = tl_block;
    WarpState& w = b->warps[f->warp];
    const char* what = LdmatrixNames[trans ? 1 : 0][matrices == 1 ? 0 : matrices == 2 ? 1 : 2];
    std::uintptr_t p = address(row);
    // Only the lanes that give a row address for this shape are checked: the others' addresses are ignored.
    if (f->lane < 8 * matrices) {
        std::string who = std::string(what) + " at " + site_text(file, line) + ": row address " + pointer_text(p) + " of matrix " +
                          std::to_string(f->lane / 8) + " row " + std::to_string(f->lane % 8);
        if (p % 16) lane_error(f, who + " is not 16-byte aligned (each row is 16 contiguous bytes at a 16-byte-aligned shared address)");
        if (!in_shared(b, p, 16)) lane_error(f, who + " .. +16 is not in shared memory (" + shared_regions(b) + ")");
    }
    int buffer = static_cast<int>(w.gen & 1);
    w.slots[buffer][f->lane] = p;
    LdmatrixShape shape{matrices, trans};
    AlignedOp op{file, line, &ldmatrix_complete, &shape};
    warp_rendezvous(0xffffffffu, what, &op);
    for (int m = 0; m < matrices; m++) regs[m] = w.results[buffer][f->lane][m];
}

// ---------------------------------------------------------------- mma.sync

namespace {

/// The tf32 operand an fp32 bit pattern gives the emulated tensor core: its top 19 bits (sign, exponent, 10
/// mantissa bits), i.e. truncation toward zero of the low 13 bits. A NaN stays a NaN (clearing its low bits
/// could leave an infinity). Exact for values that are tf32 already (cvt.rna.tf32.f32, float_to_tf32).
float tf32_operand(unsigned bits) {
    if ((bits & 0x7fffffffu) <= 0x7f800000u) bits &= 0xffffe000u;
    return from_bits<float>(bits);
}

/// D = A . B + C for one m16n8kK tile, each output in a fixed order: acc = c, then acc = fl32(acc + a[m][k] b[k][n])
/// for k = 0, 1, ..., K - 1. The products of bf16 (8-bit significands) and tf32 (11-bit) operands are exact in
/// fp32, so each step rounds once, to nearest even, as sequential fp32 accumulation does (and a fused
/// multiply-add, should the compiler contract one, gives the same bits). The PTX ISA does not specify the
/// hardware's internal order or rounding of the sum (tensor cores add the products with their own alignment and
/// truncation), so a kernel may rely on no more than fp32 accumulation's accuracy, which this emulation gives.
template <int K>
void multiply_accumulate(const float (&a)[16][K], const float (&bm)[K][8], float (&acc)[16][8]) {
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            float sum = acc[m][n];
            for (int k = 0; k < K; k++) {
                float product = a[m][k] * bm[k][n];
                sum = sum + product;
            }
            acc[m][n] = sum;
        }
}

/// C and D (16x8 fp32) of both shapes: c_i at row group + 8 (i / 2), column 2t + (i % 2), group = lane / 4, t = lane % 4.
void load_c(const unsigned (&operands)[32][10], float (&acc)[16][8]) {
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++) acc[lane / 4 + 8 * (i >> 1)][2 * (lane % 4) + (i & 1)] = from_bits<float>(operands[lane][6 + i]);
}

void store_d(const float (&acc)[16][8], unsigned (&results)[32][4]) {
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++)
            results[lane][i] = static_cast<unsigned>(to_bits(acc[lane / 4 + 8 * (i >> 1)][2 * (lane % 4) + (i & 1)]));
}

/// "Matrix fragments for mma.m16n8k16 with floating point type" (.bf16): a_e (e = 0..7, register e / 2, the low
/// half for even e) at row group + 8 ((e / 2) % 2), column 2t + (e % 2) + 8 (e / 4); b_e (e = 0..3) at row (k)
/// 2t + (e % 2) + 8 (e / 2), column group.
void mma_bf16_complete(WarpState& w, int buffer, const void*) {
    float a[16][16], bm[16][8], acc[16][8];
    const unsigned(&operands)[32][10] = w.operands[buffer];
    for (int lane = 0; lane < 32; lane++) {
        int group = lane / 4, t = lane % 4;
        for (int e = 0; e < 8; e++) {
            auto half = static_cast<unsigned short>(operands[lane][e >> 1] >> (16 * (e & 1)));
            a[group + 8 * ((e >> 1) & 1)][2 * t + (e & 1) + 8 * (e >> 2)] = bf16_bits_to_float(half);
        }
        for (int e = 0; e < 4; e++) {
            auto half = static_cast<unsigned short>(operands[lane][4 + (e >> 1)] >> (16 * (e & 1)));
            bm[2 * t + (e & 1) + 8 * (e >> 1)][group] = bf16_bits_to_float(half);
        }
    }
    load_c(operands, acc);
    multiply_accumulate(a, bm, acc);
    store_d(acc, w.results[buffer]);
}

/// "Matrix fragments for mma.m16n8k8" (.tf32): a_i (i = 0..3) at row group + 8 (i % 2), column t + 4 (i / 2);
/// b_i (i = 0, 1) at row (k) t + 4i, column group.
void mma_tf32_complete(WarpState& w, int buffer, const void*) {
    float a[16][8], bm[8][8], acc[16][8];
    const unsigned(&operands)[32][10] = w.operands[buffer];
    for (int lane = 0; lane < 32; lane++) {
        int group = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; i++) a[group + 8 * (i & 1)][t + 4 * (i >> 1)] = tf32_operand(operands[lane][i]);
        for (int i = 0; i < 2; i++) bm[t + 4 * i][group] = tf32_operand(operands[lane][4 + i]);
    }
    load_c(operands, acc);
    multiply_accumulate(a, bm, acc);
    store_d(acc, w.results[buffer]);
}

/// Deposits this lane's operands (a: 4 registers, b: 2, c: 4 fp32), meets the other 31 lanes, takes its d.
void mma(float* d, const unsigned* a, const unsigned* b, const float* c, const char* what, const AlignedOp& op) {
    Fiber* f = tl_fiber;
    WarpState& w = tl_block->warps[f->warp];
    int buffer = static_cast<int>(w.gen & 1);
    unsigned* in = w.operands[buffer][f->lane];
    for (int i = 0; i < 4; i++) in[i] = a[i];
    for (int i = 0; i < 2; i++) in[4 + i] = b[i];
    for (int i = 0; i < 4; i++) in[6 + i] = static_cast<unsigned>(to_bits(c[i]));
    warp_rendezvous(0xffffffffu, what, &op);
    // d may be c: c was copied in above, so writing d now is safe.
    for (int i = 0; i < 4; i++) d[i] = from_bits<float>(w.results[buffer][f->lane][i]);
}

} // namespace

void mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const float* c, const char* file, int line) {
    mma(d, a, b, c, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", AlignedOp{file, line, &mma_bf16_complete, nullptr});
}

void mma_m16n8k8_tf32(float* d, const unsigned* a, const unsigned* b, const float* c, const char* file, int line) {
    mma(d, a, b, c, "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", AlignedOp{file, line, &mma_tf32_complete, nullptr});
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

/// The emulated device: 80 (A100: 166,912 bytes of shared memory per block with opt-in) or 90 (H100/H200:
/// 232,448 bytes; the default, or OR1_EMU_ARCH). Returns 0, or 2 for another architecture. Process-wide.
__attribute__((visibility("default"))) int or1_emu_set_device_arch(int arch) {
    if (arch != 80 && arch != 90)
        return set_error(2, "sm_" + std::to_string(arch) + " is not an emulated device architecture: use 80 (A100) or 90 (H100, H200)");
    g_arch.store(arch);
    return 0;
}

__attribute__((visibility("default"))) int or1_emu_device_arch() { return g_arch.load(); }

/// CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN of the emulated device.
__attribute__((visibility("default"))) int or1_emu_max_shared_optin() { return static_cast<int>(opt_in_shared_bytes(g_arch.load())); }

/// cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES): the most dynamic shared memory a
/// launch of `kernel` may ask for (49,152 bytes until it is set). Returns 0, 1 for a null kernel, or 2 when
/// `bytes` is negative or above the device's opt-in maximum (the driver's CUDA_ERROR_INVALID_VALUE), with
/// the message in or1_emu_last_error. Setting it lower again is allowed, as on a GPU.
__attribute__((visibility("default"))) int or1_emu_set_max_dynamic_shared(const void* kernel, int bytes) {
    if (!kernel) return set_error(1, "no kernel (null handle)");
    const auto* info = static_cast<const KernelInfo*>(kernel);
    std::string name = info->name;
    int arch = g_arch.load();
    unsigned deviceMax = opt_in_shared_bytes(arch);
    if (bytes < 0)
        return set_error(2, name + ": " + AttributeName + " = " + std::to_string(bytes) + " is negative; cuFuncSetAttribute refuses it (CUDA_ERROR_INVALID_VALUE)");
    if (static_cast<unsigned>(bytes) > deviceMax) return set_error(2, name + ": " + attribute_above_device_message(bytes, deviceMax, arch));
    std::lock_guard<std::mutex> lock(g_attributeMutex);
    g_maxDynamicShared[info] = static_cast<unsigned>(bytes);
    return 0;
}

/// cuFuncGetAttribute(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK): the maxThreadsPerBlock of the kernel's launch bounds,
/// or 1024 where it declares none; -1 for a null kernel.
__attribute__((visibility("default"))) int or1_emu_kernel_max_threads(const void* kernel) {
    if (!kernel) return -1;
    int bound = static_cast<const KernelInfo*>(kernel)->maxThreads;
    return bound > 0 ? bound : MaxThreadsPerBlock;
}

/// cuFuncGetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES); -1 for a null kernel.
__attribute__((visibility("default"))) int or1_emu_get_max_dynamic_shared(const void* kernel) {
    return kernel ? static_cast<int>(max_dynamic_shared(static_cast<const KernelInfo*>(kernel))) : -1;
}

/// Launches a kernel found by or1_emu_find_kernel, synchronously. argCount/argSizes (sizes in bytes
/// of each argument value) are checked against the kernel's signature when argCount >= 0.
/// Returns 0, or 1 unknown kernel, 2 invalid configuration (grid, block or a block above the kernel's
/// __launch_bounds__, or dynamic shared memory above
/// the kernel's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES or the device), 3 argument mismatch,
/// 4 kernel failure (a trap, a deadlock, a warp collective naming a lane that exited or does not exist).
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
    if (info->maxThreads > 0 && threads > static_cast<unsigned long long>(info->maxThreads))
        return set_error(2, name + ": " + launch_above_bounds_message(bx, by, bz, threads, info->maxThreads));
    // The driver's rule, worded as SharedMemoryLimits.cs words it for the Cuda runtime.
    int arch = g_arch.load();
    unsigned deviceMax = opt_in_shared_bytes(arch), limit = max_dynamic_shared(info);
    if (sharedBytes > deviceMax) return set_error(2, name + ": " + launch_above_device_message(sharedBytes, deviceMax, arch));
    if (sharedBytes > limit) return set_error(2, name + ": " + launch_above_limit_message(sharedBytes, limit));
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
