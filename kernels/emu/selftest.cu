// selftest.cu — kernels that check the emulator itself (they are plain CUDA and behave the same on a GPU,
// except emu_selftest_race, whose outcome a GPU leaves undefined). Run by emu_selftest.cpp (CTest) and by
// the .NET suite (EmuSelfTests) through or1_emu_launch.
#include "../common.cuh"
#include "../vector_io.cuh"

/// Barrier-ordered exchange through static shared memory: out[i] = 2 * ((i + 1) % n) + 1 + 1000 * block.
OR1_KERNEL void emu_selftest_exchange(int* out) {
    __shared__ int slots[1024];
    int n = blockDim.x, i = threadIdx.x;
    slots[i] = 2 * i + 1 + 1000 * static_cast<int>(blockIdx.x);
    __syncthreads();
    out[blockIdx.x * n + i] = slots[(i + 1) % n];
}
OR1_REGISTER(emu_selftest_exchange)

/// Shuffles: out[4 * t + 0..3] = xor 5, up 3, down 3, idx (lane 7 of the 8-wide group) of v = 100 + lane.
OR1_KERNEL void emu_selftest_shuffle(int* out) {
    int t = threadIdx.x, lane = t & 31;
    int v = 100 + lane;
    out[4 * t + 0] = __shfl_xor_sync(OR1_FULL_MASK, v, 5);
    out[4 * t + 1] = __shfl_up_sync(OR1_FULL_MASK, v, 3);
    out[4 * t + 2] = __shfl_down_sync(OR1_FULL_MASK, v, 3);
    out[4 * t + 3] = __shfl_sync(OR1_FULL_MASK, v, 7, 8);
}
OR1_REGISTER(emu_selftest_shuffle)

/// Block reduction: out[block] = sum of x[block * blockDim + i]; also the warp ballot of odd values.
OR1_KERNEL void emu_selftest_reduce(const float* x, float* out, unsigned* ballots) {
    __shared__ float scratch[32];
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    float s = block_sum(v, scratch);
    unsigned b = __ballot_sync(OR1_FULL_MASK, static_cast<int>(v) & 1);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
    if ((threadIdx.x & 31) == 0) ballots[blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32] = b;
}
OR1_REGISTER(emu_selftest_reduce)

/// A race: every thread writes one shared word with no ordering, then thread 0 reads it after the
/// barrier. A GPU leaves the winner undefined; the emulator's schedule decides it (the last thread in
/// schedule order wins), so the outcome is reproducible and flips with the reverse schedule.
OR1_KERNEL void emu_selftest_race(int* out) {
    __shared__ int winner;
    winner = threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = winner;
}
OR1_REGISTER(emu_selftest_race)

/// Atomics across blocks: counter += 1 per thread, fsum += 0.5, max of thread ids, one CAS winner.
OR1_KERNEL void emu_selftest_atomics(int* counter, float* fsum, int* maximum, int* casWinner) {
    int id = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(counter, 1);
    atomicAdd(fsum, 0.5f);
    atomicMax(maximum, id);
    atomicCAS(casWinner, -1, id);
}
OR1_REGISTER(emu_selftest_atomics)

/// Dynamic shared memory: the block reverses x through it.
OR1_KERNEL void emu_selftest_dynamic_shared(const float* x, float* out, int n) {
    OR1_DYNAMIC_SHARED(float, buffer);
    for (int i = threadIdx.x; i < n; i += blockDim.x) buffer[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = buffer[n - 1 - i];
}
OR1_REGISTER(emu_selftest_dynamic_shared)

/// A deadlock a GPU would hang on (half a warp at __syncwarp, the other half at __syncthreads): the
/// emulator must report it as a launch error instead.
OR1_KERNEL void emu_selftest_deadlock(int* out) {
    if ((threadIdx.x & 31) < 16) __syncwarp();
    else __syncthreads();
    out[threadIdx.x] = 1;
}
OR1_REGISTER(emu_selftest_deadlock)

/// Threads that exit early do not hold back a barrier of the others.
OR1_KERNEL void emu_selftest_early_exit(int* out) {
    __shared__ int value;
    if (threadIdx.x >= 40) return;
    if (threadIdx.x == 39) value = 7;
    __syncthreads();
    out[threadIdx.x] = value;
}
OR1_REGISTER(emu_selftest_early_exit)

/// Threads from `live` on return at once; the others run warp collective `op` with the full mask:
/// 0 __shfl_xor_sync, 1 __ballot_sync, 2 __syncwarp, 3 __syncwarp(1) (a mask that names lane 0 only,
/// called by every lane). With live < blockDim.x the full mask names lanes that have exited; with a
/// block size that is not a multiple of 32 it names lanes of the last warp that do not exist. Both are
/// undefined behaviour on a GPU, so the emulator must fail the launch (naming the warp, mask and lanes).
OR1_KERNEL void emu_selftest_full_mask(int* out, int live, int op) {
    int t = threadIdx.x;
    if (t >= live) return;
    int v = t;
    if (op == 0) v = __shfl_xor_sync(OR1_FULL_MASK, v, 1);
    else if (op == 1) v = static_cast<int>(__ballot_sync(OR1_FULL_MASK, t & 1));
    else if (op == 2) __syncwarp();
    else __syncwarp(1u);
    out[t] = v;
}
OR1_REGISTER(emu_selftest_full_mask)

/// The same early exits done right: each warp's mask names exactly its lanes below `live` (which also
/// leaves out the lanes a partial last warp does not have). out[3t + 0] = lane 0's 100 broadcast,
/// out[3t + 1] = the ballot of odd lanes, out[3t + 2] = on lane 0 the sum of the warp's live lane
/// numbers by a guarded shuffle-down tree (the top lanes read lanes outside the mask and discard them).
OR1_KERNEL void emu_selftest_live_mask(int* out, int live) {
    int t = threadIdx.x, lane = t & 31;
    if (t >= live) return;
    int lanes = min(32, live - (t & ~31));
    unsigned mask = lanes == 32 ? OR1_FULL_MASK : (1u << lanes) - 1u;
    int broadcast = __shfl_sync(mask, 100 + lane, 0);
    unsigned odd = __ballot_sync(mask, lane & 1);
    int sum = lane;
    for (int o = 16; o > 0; o >>= 1) {
        int other = __shfl_down_sync(mask, sum, o);
        if (lane + o < lanes) sum += other;
    }
    __syncwarp(mask);
    out[3 * t + 0] = broadcast;
    out[3 * t + 1] = static_cast<int>(odd);
    out[3 * t + 2] = sum;
}
OR1_REGISTER(emu_selftest_live_mask)

/// Launch bounds: out[linear thread id] = that id, in blocks of at most 64 threads (any shape). A larger block is
/// refused by a GPU (ptxas fitted the kernel to the bound) and so by the emulator. The other self-test kernels
/// declare no bounds on purpose: they are launched at odd sizes up to the 1024-thread limit and never ship as PTX.
OR1_BOUNDED_KERNEL(emu_selftest_bounded, (64), (int* out)) {
    int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[t] = t;
}

/// One 16-byte copy through vector_io.cuh's load16 / store16 (LDG.E.128 / STG.E.128 on a GPU), by one thread. A GPU
/// faults on either pointer off the 16-byte grid (CUDA_ERROR_MISALIGNED_ADDRESS), so the emulator fails the launch.
OR1_KERNEL void emu_selftest_vector_copy(const float* in, float* out) { store16(out, load16(in)); }
OR1_REGISTER(emu_selftest_vector_copy)

/// The memcheck probes (deliberate bugs, launched only by Emu/EmuMemcheckTests in a process under AddressSanitizer):
/// out[i] = in[i + 1] for i < n, so the last thread reads one element past an n-element allocation; a GPU's
/// compute-sanitizer memcheck reports it as an invalid global read.
OR1_KERNEL void emu_selftest_read_past_end(const float* in, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i + 1];
}
OR1_REGISTER(emu_selftest_read_past_end)

/// ... and each thread writes the dynamic shared word after its own, so the last one writes past the launch's dynamic
/// shared memory (blockDim.x words): an out-of-range shared address on a GPU.
OR1_KERNEL void emu_selftest_shared_past_end(float* out) {
    OR1_DYNAMIC_SHARED(float, words);
    words[threadIdx.x + 1] = static_cast<float>(threadIdx.x);
    __syncthreads();
    out[threadIdx.x] = words[threadIdx.x];
}
OR1_REGISTER(emu_selftest_shared_past_end)
