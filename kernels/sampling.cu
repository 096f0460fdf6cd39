// sampling.cu — next-token sampling per row: temperature, top-k, then top-p on the top-k-renormalised
// distribution (HF's warper order), then inverse-CDF sampling with the counter-based uniform of
// src/OR1.Native/Ops/CounterRng.cs, reproduced bit for bit. Reference: src/OR1.Native/Cpu/Sampling.cs.
//
// One block per row. Without filtering (the recipe's default) nothing is sorted: a max, an exp pass
// and a chunked inverse-CDF walk. With filtering, candidates are ordered by the 64-bit key
// (probability descending, id ascending): rows of at most sortCapacity tokens are bitonic-sorted in
// shared memory and walked exactly like the Cpu backend; larger vocabularies find the top-k boundary,
// the nucleus boundary and the drawn token by bisection over the key space (64 block reductions each,
// no sort, no scratch beyond the exps).
#include "common.cuh"

static __device__ __forceinline__ unsigned long long splitmix_mix(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/// CounterRng.Hash(seed, counter, row).
static __device__ __forceinline__ unsigned long long counter_hash(unsigned long long seed, unsigned long long counter,
                                                                  unsigned long long row) {
    unsigned long long z = splitmix_mix(seed + 0x9E3779B97F4A7C15ULL);
    z = splitmix_mix(z ^ (counter * 0xD1B54A32D192ED03ULL));
    return splitmix_mix(z ^ (row * 0x8CB92BA72F3D8DD7ULL + 0x632BE59BD9B4E019ULL));
}

/// CounterRng.Uniform: 53 random bits in [0, 1).
static __device__ __forceinline__ double counter_uniform(unsigned long long seed, unsigned long long counter, unsigned long long row) {
    return static_cast<double>(counter_hash(seed, counter, row) >> 11) * (1.0 / 9007199254740992.0);
}

/// A key whose ascending order is (value descending, id ascending).
static __device__ __forceinline__ unsigned long long order_key(float value, int id) {
    unsigned bits = __float_as_uint(value);
    unsigned ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return (static_cast<unsigned long long>(~ordered) << 32) | static_cast<unsigned>(id);
}

static __device__ __forceinline__ int block_max_int(int v, int* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(OR1_FULL_MASK, v, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : OR1_INT_MIN;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(OR1_FULL_MASK, v, o));
    return v;
}

/// Count and mass (sum of exps) of the tokens whose key is <= bound; every thread gets both.
static __device__ void mass_upto(const float* row, const float* e, int vocab, float temperature, unsigned long long bound,
                                 double* scratch, double* count, double* mass) {
    double c = 0.0, s = 0.0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        if (order_key(row[j] / temperature, j) <= bound) {
            c += 1.0;
            s += e[j];
        }
    }
    *count = block_sum_d(c, scratch);
    *mass = block_sum_d(s, scratch);
}

/// Launch: grid = rows, block 32 (small vocabularies) or 256, a multiple of 32; dynamic shared
/// sortCapacity * 8 bytes where sortCapacity is 0 or a power of two >= vocab (rows that need
/// filtering are then sorted in shared memory). exps: scratch [rows, vocab].
OR1_BOUNDED_KERNEL(sample_rows, (256), (const float* __restrict__ logits, int rows, int vocab, float temperature, float topP, int topK,
                                        unsigned long long seed, unsigned long long counter, int* __restrict__ tokens,
                                        float* __restrict__ logProbs, float* __restrict__ exps, int sortCapacity)) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    __shared__ int iscratch[32];
    __shared__ double parts[1024];
    __shared__ int chosenChunk;
    __shared__ double chosenPrefix;
    int b = blockIdx.x;
    if (b >= rows) return;
    const float* row = logits + static_cast<long long>(b) * vocab;
    float* e = exps + static_cast<long long>(b) * vocab;
    int tid = threadIdx.x;

    if (temperature == 0.f) {
        // Greedy: the first maximum, and log softmax at T = 1.
        float best = OR1_NEG_INF;
        int bestId = vocab;
        for (int j = tid; j < vocab; j += blockDim.x) {
            float x = row[j];
            if (x > best || (x == best && j < bestId)) { best = x; bestId = j; }
        }
        float maxValue = block_max(best, fscratch);
        int candidate = best == maxValue ? bestId : vocab;
        int first = -block_max_int(-candidate, iscratch);
        double total = 0.0;
        for (int j = tid; j < vocab; j += blockDim.x) total += expf(row[j] - maxValue);
        total = block_sum_d(total, dscratch);
        if (tid == 0) {
            tokens[b] = first;
            logProbs[b] = row[first] - static_cast<float>(maxValue + log(total));
        }
        return;
    }

    float zMax = OR1_NEG_INF;
    for (int j = tid; j < vocab; j += blockDim.x) zMax = fmaxf(zMax, row[j] / temperature);
    zMax = block_max(zMax, fscratch);
    double total = 0.0;
    for (int j = tid; j < vocab; j += blockDim.x) {
        float x = expf(row[j] / temperature - zMax);
        e[j] = x;
        total += x;
    }
    total = block_sum_d(total, dscratch); // its barriers also publish e[] to the block
    float lse = static_cast<float>(zMax + log(total));
    double uniform = counter_uniform(seed, counter, static_cast<unsigned long long>(b));
    bool filter = (topK > 0 && topK < vocab) || topP < 1.0f;
    int token;

    if (!filter) {
        // Inverse CDF in id order over contiguous per-thread chunks: chunk sums, a serial scan by
        // thread 0 to find the chunk where the running mass passes the target, a walk of that chunk.
        double target = uniform * total;
        int per = (vocab + blockDim.x - 1) / blockDim.x;
        int j0 = min(vocab, tid * per), j1 = min(vocab, j0 + per);
        double part = 0.0;
        int lastPositive = -1;
        for (int j = j0; j < j1; j++)
            if (e[j] > 0.f) { part += e[j]; lastPositive = j; }
        parts[tid] = part;
        int lastOverall = block_max_int(lastPositive, iscratch); // barriers publish parts[]
        if (tid == 0) {
            double running = 0.0;
            int chosen = -1;
            for (int t = 0; t < static_cast<int>(blockDim.x); t++) {
                if (running + parts[t] > target) { chosen = t; break; }
                running += parts[t];
            }
            chosenChunk = chosen;
            chosenPrefix = running;
        }
        __syncthreads();
        token = lastOverall < 0 ? 0 : lastOverall;
        if (chosenChunk >= 0) {
            if (tid == chosenChunk) {
                double running = chosenPrefix;
                int found = lastPositive;
                for (int j = j0; j < j1; j++) {
                    if (e[j] <= 0.f) continue;
                    running += e[j];
                    if (running > target) { found = j; break; }
                }
                iscratch[0] = found;
            }
            __syncthreads();
            token = iscratch[0];
        }
    } else if (sortCapacity >= vocab) {
        OR1_DYNAMIC_SHARED(unsigned long long, keys);
        for (int j = tid; j < sortCapacity; j += blockDim.x) keys[j] = j < vocab ? order_key(row[j] / temperature, j) : ~0ULL;
        __syncthreads();
        for (int k = 2; k <= sortCapacity; k <<= 1) {
            for (int j = k >> 1; j > 0; j >>= 1) {
                for (int i = tid; i < sortCapacity; i += blockDim.x) {
                    int ixj = i ^ j;
                    if (ixj > i) {
                        unsigned long long a = keys[i], c = keys[ixj];
                        bool ascending = (i & k) == 0;
                        if ((a > c) == ascending) { keys[i] = c; keys[ixj] = a; }
                    }
                }
                __syncthreads();
            }
        }
        if (tid == 0) {
            // Exactly the Cpu backend's walk over the sorted candidates.
            int kept = topK > 0 ? min(topK, vocab) : vocab;
            double keptMass = 0.0;
            for (int r = 0; r < kept; r++) keptMass += e[static_cast<int>(keys[r] & 0xffffffffULL)];
            if (topP < 1.0f) {
                double cumulative = 0.0;
                int nucleus = 0;
                while (nucleus < kept) {
                    cumulative += e[static_cast<int>(keys[nucleus] & 0xffffffffULL)];
                    nucleus++;
                    if (cumulative >= topP * keptMass) break;
                }
                kept = nucleus;
                keptMass = cumulative;
            }
            double target = uniform * keptMass, running = 0.0;
            int pick = static_cast<int>(keys[kept - 1] & 0xffffffffULL);
            for (int r = 0; r < kept; r++) {
                int j = static_cast<int>(keys[r] & 0xffffffffULL);
                running += e[j];
                if (running > target) { pick = j; break; }
            }
            iscratch[0] = pick;
        }
        __syncthreads();
        token = iscratch[0];
    } else {
        double count, mass;
        unsigned long long keptBound = ~0ULL;
        double keptMass;
        if (topK > 0 && topK < vocab) {
            unsigned long long lo = 0, hi = ~0ULL;
            while (lo < hi) {
                unsigned long long mid = lo + (hi - lo) / 2;
                mass_upto(row, e, vocab, temperature, mid, dscratch, &count, &mass);
                if (count >= topK) hi = mid; else lo = mid + 1;
            }
            keptBound = lo;
        }
        mass_upto(row, e, vocab, temperature, keptBound, dscratch, &count, &keptMass);
        unsigned long long nucleusBound = keptBound;
        double nucleusMass = keptMass;
        if (topP < 1.0f) {
            double goal = topP * keptMass;
            unsigned long long lo = 0, hi = keptBound;
            while (lo < hi) {
                unsigned long long mid = lo + (hi - lo) / 2;
                mass_upto(row, e, vocab, temperature, mid, dscratch, &count, &mass);
                if (mass >= goal) hi = mid; else lo = mid + 1;
            }
            nucleusBound = lo;
            mass_upto(row, e, vocab, temperature, nucleusBound, dscratch, &count, &nucleusMass);
        }
        double target = uniform * nucleusMass;
        unsigned long long lo = 0, hi = nucleusBound;
        while (lo < hi) {
            unsigned long long mid = lo + (hi - lo) / 2;
            mass_upto(row, e, vocab, temperature, mid, dscratch, &count, &mass);
            if (mass > target) hi = mid; else lo = mid + 1;
        }
        token = static_cast<int>(lo & 0xffffffffULL);
    }

    if (tid == 0) {
        tokens[b] = token;
        logProbs[b] = row[token] / temperature - lse;
    }
}
