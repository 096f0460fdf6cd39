// sampling.cu — next-token sampling per row: temperature, top-k, then top-p on the top-k-renormalised distribution
// (HF's warper order), then inverse-CDF sampling with the counter-based uniform of src/OR1.Native/Ops/CounterRng.cs,
// bit for bit. Reference: src/OR1.Native/Cpu/Sampling.cs, which implements the same rules (below) exactly.
//
// The rules. z_j = x_j / T (fp32), m = max z, e_j = expf(z_j - m) (fp32), and the weight of token j is the integer
// w_j = trunc(e_j * 2^F): a fixed-point probability with F = min(3 (32 - n) - 1, 62 - n) fraction bits, n = ceil(log2 V)
// (41 for Qwen2's 151,936 tokens, so a token below 2^-41 of the most likely one gets weight 0). Every sum is an
// exact integer sum, so no result depends on summation order, thread count or backend: only expf's last bit differs
// between CUDA, the emulator's libm and .NET, as it did before. Candidates are ordered by the key (z descending,
// id ascending). Top-k keeps the first k keys; top-p keeps the shortest prefix of those whose weight reaches
// ceil(p * kept weight) (exact 128-bit arithmetic on p's binary value); the draw takes the first key of the nucleus
// whose running weight exceeds floor(N * u / 2^53), u = CounterRng's 53 random bits, N the nucleus weight. With no
// filter the draw walks ids in order instead, as before. Only the token and log softmax(z) at it leave the device.
//
// Why radix select and not rejection sampling. Rejection sampling (FlashInfer's top-p/top-k) draws a fresh uniform per
// round and accepts a token by a pivot test: for a given seed it picks a different token than an inverse-CDF walk of
// the sorted distribution, its number of rounds is random, and the Cpu backend would have to become the same
// randomised loop to stay token-for-token equal. A radix select over the 32-bit value key reproduces the sorted walk
// exactly with a bounded number of passes: the key is cut into digits of 11, 11 and 10 bits; a pass over the row
// builds, for the tokens whose key starts with the chosen prefix, a shared-memory histogram of the next digit (count,
// weight, smallest id); a block scan of the histogram finds the bucket where the running count or weight crosses the
// target, and the next pass refines that bucket. Three targets are found in turn, each from the previous one's result:
// the top-k boundary (by count), the nucleus boundary (by weight, within the top-k), the drawn token (by weight,
// within the nucleus); ties at a boundary share one weight, so how many of them are kept is arithmetic, and the
// smallest-id entry of each bucket names a token as soon as a bucket holds a single one.
//
// Passes over the row (each reads x once; a block per row): 1 max; 2 the total weight, the first-digit histogram
// (and, with top-k, its first-digit counts in pass 1 and the second digit inside the top-k bucket in pass 2); then at
// most one more pass per further digit of each target: a target whose bucket already holds one token, or whose next
// digit lies in a histogram another target built for the same prefix, needs none. At most 5 passes for top-k alone,
// 6 for top-p alone, 7 for both (2 or 3 when the boundaries and the draw land in buckets of one token or share
// them); plus one pass and one warp's share of another when the drawn key is shared by several tokens (ties: common
// with bf16 logits) to find the i-th of them in id order. Unfiltered: 2 passes and one warp's share of a third;
// greedy: 2. The old bisection made about 200.
// Tokens far below the boundaries never enter a histogram: with top-k, only those in or above its first-digit
// bucket; with top-p alone, only those with w >= (1 - p) 2^F / V (the rest weigh less than (1 - p) of the total
// together, so the nucleus boundary cannot lie among them). Weights go into three 32-bit counters of 32 - n
// (at most 21) bits each, exact integer atomics: 64-bit shared-memory atomics are a CAS loop on sm_80/sm_90, and
// float atomics would make the sums depend on scheduling. Later passes skip tokens outside the prefix's logit
// interval with two integer compares (no division), found once per pass by a binary search over x. Each level keeps
// its own histogram (2048 + 2048 + 1024 buckets of five words: 100 KB of dynamic shared memory, above the 48 KB that
// needs no opt-in; two blocks per SM on sm_90, one on sm_80), so a later target reuses what an earlier one built.
#include "common.cuh"

typedef unsigned long long u64;

#define SAMPLE_L1_BUCKETS 2048 // key bits 31..21
#define SAMPLE_L2_BUCKETS 2048 // key bits 20..10
#define SAMPLE_L3_BUCKETS 1024 // key bits 9..0
#define SAMPLE_HIST_WORDS 5    // per bucket: count, three weight pieces, smallest id
/// Dynamic shared memory of a filtered launch: the three levels' histograms (102,400 bytes; needs the opt-in).
#define SAMPLE_SHARED_BYTES ((SAMPLE_L1_BUCKETS + SAMPLE_L2_BUCKETS + SAMPLE_L3_BUCKETS) * SAMPLE_HIST_WORDS * 4)
#define SAMPLE_LN2 0.69314718055994530942

// ------------------------------------------------------------------ CounterRng

static __device__ __forceinline__ u64 splitmix_mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/// CounterRng.Hash(seed, counter, row).
static __device__ __forceinline__ u64 counter_hash(u64 seed, u64 counter, u64 row) {
    u64 z = splitmix_mix(seed + 0x9E3779B97F4A7C15ULL);
    z = splitmix_mix(z ^ (counter * 0xD1B54A32D192ED03ULL));
    return splitmix_mix(z ^ (row * 0x8CB92BA72F3D8DD7ULL + 0x632BE59BD9B4E019ULL));
}

// ------------------------------------------------------------------ keys, weights and exact arithmetic

/// The float's bits as an unsigned integer of the same order (negative floats reversed below the positive ones).
static __device__ __forceinline__ unsigned ordered_bits(float v) {
    unsigned b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

static __device__ __forceinline__ float from_ordered_bits(unsigned o) {
    return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

/// 32 bits whose ascending order is the descending order of z (the Cpu backend's key, without the id).
static __device__ __forceinline__ unsigned value_key(float z) { return ~ordered_bits(z); }
static __device__ __forceinline__ float key_value(unsigned u) { return from_ordered_bits(~u); }

/// The rules' fixed point: weights of F fraction bits, summed in three counters of `piece` bits each.
struct SampleFixedPoint {
    int piece;
    int fraction;
    float scale; // 2^fraction
};

static __device__ __forceinline__ SampleFixedPoint sample_fixed_point(int vocab) {
    int n = vocab <= 1 ? 0 : 32 - __clz(vocab - 1);
    SampleFixedPoint f;
    f.piece = min(32 - n, 21);
    f.fraction = min(3 * (32 - n) - 1, 62 - n);
    f.scale = __int_as_float((127 + f.fraction) << 23);
    return f;
}

static __device__ __forceinline__ float tempered(float x, float temperature) { return temperature == 1.f ? x : x / temperature; }

static __device__ __forceinline__ u64 fixed_weight(float z, float zMax, float scale) {
    return static_cast<u64>(expf(z - zMax) * scale);
}

/// ceil(p * k) for 0 < p < 1 exactly: p = mantissa * 2^-shift with shift >= 24, and the product needs 88 bits.
static __device__ __forceinline__ u64 ceil_mul_fraction(float p, u64 k) {
    unsigned bits = __float_as_uint(p);
    int exponent = static_cast<int>((bits >> 23) & 0xffu);
    u64 mantissa = bits & 0x7fffffu;
    if (exponent) mantissa |= 0x800000u;
    else exponent = 1;
    int shift = 150 - exponent;
    u64 lo = mantissa * k, hi = __umul64hi(mantissa, k);
    u64 q;
    bool rest;
    if (shift >= 128) {
        q = 0;
        rest = (lo | hi) != 0;
    } else if (shift >= 64) {
        int s = shift - 64;
        q = hi >> s;
        rest = lo != 0 || (s > 0 && (hi << (64 - s)) != 0);
    } else {
        q = (lo >> shift) | (hi << (64 - shift));
        rest = (lo << (64 - shift)) != 0;
    }
    return q + (rest ? 1 : 0);
}

/// floor(n * bits53 / 2^53): the draw's target in [0, n) for CounterRng's 53 random bits.
static __device__ __forceinline__ u64 scale_uniform(u64 n, u64 bits53) {
    return (n * bits53 >> 53) | (__umul64hi(n, bits53) << 11);
}

// ------------------------------------------------------------------ streaming a row with 16-byte loads

template <typename S>
struct Vec16;

template <>
struct Vec16<float> {
    static constexpr int N = 4;
    typedef float4 Raw;
    static __device__ __forceinline__ void unpack(const Raw& r, float* x) {
        x[0] = r.x;
        x[1] = r.y;
        x[2] = r.z;
        x[3] = r.w;
    }
};

template <>
struct Vec16<bf16> {
    static constexpr int N = 8;
    typedef uint4 Raw;
    static __device__ __forceinline__ void unpack(const Raw& r, float* x) {
        x[0] = __uint_as_float(r.x << 16);
        x[1] = __uint_as_float(r.x & 0xffff0000u);
        x[2] = __uint_as_float(r.y << 16);
        x[3] = __uint_as_float(r.y & 0xffff0000u);
        x[4] = __uint_as_float(r.z << 16);
        x[5] = __uint_as_float(r.z & 0xffff0000u);
        x[6] = __uint_as_float(r.w << 16);
        x[7] = __uint_as_float(r.w & 0xffff0000u);
    }
};

/// A warp's contiguous share of a row: the elements before the first 16-byte boundary (warp 0), a range of
/// 16-byte vectors, the elements after the last whole vector (the last warp). Shares follow warp order, so a
/// warp's running sums and the totals of the warps before it give id-order prefix sums.
struct RowShare {
    int head, tail, v0, v1;
    bool first, last;
};

template <typename S>
static __device__ __forceinline__ RowShare row_share(const S* row, int vocab) {
    constexpr int N = Vec16<S>::N;
    int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    unsigned misaligned = static_cast<unsigned>(reinterpret_cast<u64>(row)) & 15u;
    RowShare s;
    s.head = min(vocab, static_cast<int>(((16u - misaligned) & 15u) / sizeof(S)));
    int vectors = (vocab - s.head) / N;
    s.tail = s.head + vectors * N;
    s.v0 = static_cast<int>(static_cast<long long>(vectors) * warp / warps);
    s.v1 = static_cast<int>(static_cast<long long>(vectors) * (warp + 1) / warps);
    s.first = warp == 0;
    s.last = warp == warps - 1;
    return s;
}

template <typename S, typename F>
static __device__ __forceinline__ void visit_vector(const typename Vec16<S>::Raw& r, int j0, F& f) {
    float x[Vec16<S>::N];
    Vec16<S>::unpack(r, x);
#pragma unroll
    for (int k = 0; k < Vec16<S>::N; k++) f(x[k], j0 + k);
}

/// f(x, id) for every element of this thread's part of its warp's share (order-free passes).
template <typename S, typename F>
static __device__ __forceinline__ void for_each_element(const S* __restrict__ row, int vocab, F& f) {
    typedef Vec16<S> V;
    int lane = threadIdx.x & 31;
    RowShare s = row_share(row, vocab);
    if (s.first && lane < s.head) f(to_f32(row[lane]), lane);
    const typename V::Raw* vp = reinterpret_cast<const typename V::Raw*>(row + s.head);
    int v = s.v0 + lane;
    // 16 elements per lane in flight before the first use: four 16-byte loads of fp32, two of bf16.
    if (V::N == 4) {
        for (; v + 96 < s.v1; v += 128) {
            typename V::Raw r0 = __ldg(vp + v), r1 = __ldg(vp + v + 32), r2 = __ldg(vp + v + 64), r3 = __ldg(vp + v + 96);
            visit_vector<S>(r0, s.head + v * V::N, f);
            visit_vector<S>(r1, s.head + (v + 32) * V::N, f);
            visit_vector<S>(r2, s.head + (v + 64) * V::N, f);
            visit_vector<S>(r3, s.head + (v + 96) * V::N, f);
        }
    } else {
        for (; v + 32 < s.v1; v += 64) {
            typename V::Raw r0 = __ldg(vp + v), r1 = __ldg(vp + v + 32);
            visit_vector<S>(r0, s.head + v * V::N, f);
            visit_vector<S>(r1, s.head + (v + 32) * V::N, f);
        }
    }
    for (; v < s.v1; v += 32) visit_vector<S>(__ldg(vp + v), s.head + v * V::N, f);
    if (s.last && s.tail + lane < vocab) f(to_f32(row[s.tail + lane]), s.tail + lane);
}

/// This warp's share in id order, 32 lanes at a time: g(x, firstId, n) gets each lane's n consecutive elements
/// (lanes in id order) and returns true (the same on every lane) to stop.
template <typename S, typename G>
static __device__ __forceinline__ void walk_share(const S* __restrict__ row, int vocab, G& g) {
    typedef Vec16<S> V;
    int lane = threadIdx.x & 31;
    RowShare s = row_share(row, vocab);
    float x[V::N];
#pragma unroll
    for (int k = 0; k < V::N; k++) x[k] = 0.f;
    if (s.first && s.head > 0) {
        int n = lane < s.head ? 1 : 0;
        if (n) x[0] = to_f32(row[lane]);
        if (g(x, lane, n)) return;
    }
    const typename V::Raw* vp = reinterpret_cast<const typename V::Raw*>(row + s.head);
    for (int base = s.v0; base < s.v1; base += 32) {
        int v = base + lane;
        int n = v < s.v1 ? V::N : 0;
        if (n) V::unpack(__ldg(vp + v), x);
        if (g(x, s.head + v * V::N, n)) return;
    }
    if (s.last && s.tail < vocab) {
        int n = s.tail + lane < vocab ? 1 : 0;
        if (n) x[0] = to_f32(row[s.tail + lane]);
        g(x, s.tail + lane, n);
    }
}

// ------------------------------------------------------------------ block-wide integer reductions and scans
//
// Through shared memory rather than shuffles: each thread posts its values, lane 0 of each warp adds its warp's 32 in
// order, and every thread adds the warp totals it needs. Three barriers and no shuffle per reduction (the emulator
// runs a shuffle as a rendezvous of the whole warp), and exact in any order: the values are integers.

#define SAMPLE_MAX_THREADS 256

struct SampleScratch {
    u64 thread[2 * SAMPLE_MAX_THREADS]; // two values per thread
    u64 warp[2 * 32];                   // their per-warp totals
};

static __device__ __forceinline__ u64 warp_inclusive_u64(u64 v) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        u64 up = __shfl_up_sync(OR1_FULL_MASK, v, o);
        if (lane >= o) v += up;
    }
    return v;
}

/// Posts (a, b) per thread and the per-warp totals; the caller reads them after this returns.
static __device__ __forceinline__ void post_u64x2(u64 a, u64 b, SampleScratch* s) {
    int t = threadIdx.x, n = blockDim.x;
    __syncthreads(); // earlier readers of the scratch are done
    s->thread[t] = a;
    s->thread[n + t] = b;
    __syncthreads();
    if ((t & 31) == 0) {
        u64 sa = 0, sb = 0;
        for (int i = t; i < t + 32; i++) {
            sa += s->thread[i];
            sb += s->thread[n + i];
        }
        s->warp[t >> 5] = sa;
        s->warp[32 + (t >> 5)] = sb;
    }
    __syncthreads();
}

/// Exclusive prefix sums of a and b over the block's threads in thread order.
static __device__ __forceinline__ void block_exclusive_u64x2(u64& a, u64& b, SampleScratch* s) {
    post_u64x2(a, b, s);
    int t = threadIdx.x, n = blockDim.x, warp = t >> 5;
    u64 pa = 0, pb = 0;
    for (int w = 0; w < warp; w++) {
        pa += s->warp[w];
        pb += s->warp[32 + w];
    }
    for (int i = warp * 32; i < t; i++) {
        pa += s->thread[i];
        pb += s->thread[n + i];
    }
    a = pa;
    b = pb;
}

/// The sum over the block.
static __device__ __forceinline__ u64 block_sum_u64(u64 v, SampleScratch* s) {
    post_u64x2(v, 0, s);
    u64 total = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); w++) total += s->warp[w];
    return total;
}

/// The largest v over the block.
static __device__ __forceinline__ u64 block_max_u64(u64 v, SampleScratch* s) {
    int t = threadIdx.x;
    __syncthreads();
    s->thread[t] = v;
    __syncthreads();
    if ((t & 31) == 0) {
        u64 m = 0;
        for (int i = t; i < t + 32; i++) m = s->thread[i] > m ? s->thread[i] : m;
        s->warp[t >> 5] = m;
    }
    __syncthreads();
    u64 m = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); w++) m = s->warp[w] > m ? s->warp[w] : m;
    return m;
}

// ------------------------------------------------------------------ histograms

/// One level's histogram in dynamic shared memory: five arrays of `buckets` words.
struct SampleHist {
    unsigned* count;
    unsigned* m0;
    unsigned* m1;
    unsigned* m2;
    unsigned* minId;
    int buckets;
};

static __device__ __forceinline__ SampleHist sample_hist(unsigned* base, int level) {
    SampleHist h;
    int offset = level == 0 ? 0 : level == 1 ? SAMPLE_L1_BUCKETS * SAMPLE_HIST_WORDS : (SAMPLE_L1_BUCKETS + SAMPLE_L2_BUCKETS) * SAMPLE_HIST_WORDS;
    h.buckets = level == 2 ? SAMPLE_L3_BUCKETS : SAMPLE_L1_BUCKETS;
    h.count = base + offset;
    h.m0 = h.count + h.buckets;
    h.m1 = h.m0 + h.buckets;
    h.m2 = h.m1 + h.buckets;
    h.minId = h.m2 + h.buckets;
    return h;
}

/// Zero counts and weights (from `fromWord` of the five arrays on) and set smallest ids to "none". No barrier.
static __device__ __forceinline__ void hist_clear(const SampleHist& h, int fromArray) {
    for (int i = fromArray * h.buckets + threadIdx.x; i < SAMPLE_HIST_WORDS * h.buckets; i += blockDim.x)
        h.count[i] = i < 4 * h.buckets ? 0u : 0xffffffffu;
}

static __device__ __forceinline__ void hist_add(const SampleHist& h, int d, u64 w, int id, int piece, bool withCount) {
    if (withCount) atomicAdd(h.count + d, 1u);
    unsigned mask = (1u << piece) - 1u;
    unsigned p0 = static_cast<unsigned>(w) & mask, p1 = static_cast<unsigned>(w >> piece) & mask,
             p2 = static_cast<unsigned>(w >> (2 * piece));
    // The common tail token has only the low piece: one weight atomic.
    if (p0) atomicAdd(h.m0 + d, p0);
    if (p1) atomicAdd(h.m1 + d, p1);
    if (p2) atomicAdd(h.m2 + d, p2);
    atomicMin(h.minId + d, static_cast<unsigned>(id));
}

static __device__ __forceinline__ u64 hist_weight(const SampleHist& h, int d, int piece) {
    return static_cast<u64>(h.m0[d]) + (static_cast<u64>(h.m1[d]) << piece) + (static_cast<u64>(h.m2[d]) << (2 * piece));
}

static __device__ __forceinline__ int level_shift(int level) { return level == 0 ? 21 : level == 1 ? 10 : 0; }
static __device__ __forceinline__ unsigned level_mask(int level) { return level == 2 ? 1023u : 2047u; }

// ------------------------------------------------------------------ boundaries and the descent

enum { kByCount = 0, kWeightAtLeast = 1, kWeightAbove = 2 };

/// A prefix of the key order that a target selected (block-uniform: every thread holds the same values). It was
/// resolved at `level`: by the exact key (level 2, the first `count - countBefore[2]` tokens of it in id order), or,
/// with `whole`, by the end of its bucket at that level (everything in the bucket kept).
struct SampleBound {
    int active, level, whole;
    int digit[3];
    u64 countBefore[3], weightBefore[3]; // kept tokens before the bound's bucket at each level
    u64 count, weight;                   // the whole prefix
};

/// How a bound limits one histogram: buckets before `digit` whole, `digit` cut to (count, weight), none after.
struct SampleClip {
    int applies, digit;
    u64 count, weight;
};

static __device__ __forceinline__ SampleClip clip_at(const SampleBound& b, int level, const int* prefix) {
    SampleClip c;
    c.applies = 0;
    c.digit = 0;
    c.count = c.weight = 0;
    // Past the bound's level the prefix lies inside its whole bucket or in a region before it: all kept.
    if (!b.active || level > b.level) return c;
    for (int l = 0; l < level; l++)
        if (prefix[l] != b.digit[l]) return c;
    c.applies = 1;
    c.digit = b.digit[level];
    c.count = b.count - b.countBefore[level];
    c.weight = b.weight - b.weightBefore[level];
    return c;
}

struct SampleCrossing {
    int bucket, clipped;
    unsigned minId;
    u64 count, weight;             // the bucket as the clip sees it
    u64 countBefore, weightBefore; // everything before the bucket, with the base
};

static __device__ __forceinline__ void bucket_view(const SampleHist& h, int piece, const SampleClip& c, int d, u64& count, u64& weight) {
    if (c.applies && d >= c.digit) {
        count = d == c.digit ? c.count : 0;
        weight = d == c.digit ? c.weight : 0;
    } else {
        count = h.count[d];
        weight = hist_weight(h, d, piece);
    }
}

static __device__ __forceinline__ bool crossed(int kind, u64 threshold, u64 count, u64 weight) {
    return kind == kByCount ? count >= threshold : kind == kWeightAtLeast ? weight >= threshold : weight > threshold;
}

/// The first bucket after which the running count or weight (from the bases) crosses the threshold; bucket -1 if
/// none does. Each thread scans a contiguous run of buckets (blockDim.x divides the bucket count).
static __device__ void find_crossing(const SampleHist& h, int piece, int kind, u64 threshold, u64 countBase, u64 weightBase,
                                     const SampleClip& clip, SampleCrossing* out, SampleScratch* scratch) {
    __syncthreads(); // the previous crossing may still be read
    if (threadIdx.x == 0) out->bucket = -1;
    int per = h.buckets / static_cast<int>(blockDim.x), d0 = threadIdx.x * per;
    u64 count = 0, weight = 0;
    for (int d = d0; d < d0 + per; d++) {
        u64 c, w;
        bucket_view(h, piece, clip, d, c, w);
        count += c;
        weight += w;
    }
    u64 countBefore = count, weightBefore = weight;
    block_exclusive_u64x2(countBefore, weightBefore, scratch);
    u64 rc = countBase + countBefore, rw = weightBase + weightBefore;
    if (!crossed(kind, threshold, rc, rw) && crossed(kind, threshold, rc + count, rw + weight)) {
        for (int d = d0; d < d0 + per; d++) {
            u64 c, w;
            bucket_view(h, piece, clip, d, c, w);
            if (crossed(kind, threshold, rc + c, rw + w)) {
                out->bucket = d;
                out->clipped = clip.applies && d == clip.digit && c != h.count[d];
                out->minId = h.minId[d];
                out->count = c;
                out->weight = w;
                out->countBefore = rc;
                out->weightBefore = rw;
                break;
            }
            rc += c;
            rw += w;
        }
    }
    __syncthreads();
}

/// Everything one row's block shares: the row, the rules' constants, the histograms and what they hold.
template <typename S>
struct SampleRow {
    const S* row;
    int vocab;
    float temperature, zMax;
    SampleFixedPoint fp;
    int cutByWeight;  // the tokens histograms may hold: w >= cutWeight, or (top-k) first digit <= cutDigit
    u64 cutWeight;
    unsigned cutDigit;
    unsigned* shared; // the histograms
    int tag[3];       // the prefix each level's histogram holds (-1: none)
    SampleCrossing* crossing;
    SampleScratch* scratch;
    int* result;
    unsigned* interval;
    int fallback;     // a valid token for inputs the rules do not cover (NaN logits)
};

/// The ordered-bits interval of logits x whose tempered value has a key in [uA, uB]: key(x / T) does not increase
/// with ordered(x), so two binary searches find it (lo > hi when empty). Thread 0 searches; the barrier publishes.
template <typename S>
static __device__ void logit_interval(const SampleRow<S>& r, unsigned uA, unsigned uB) {
    if (threadIdx.x == 0) {
        u64 a = 0, b = 1ull << 32;
        while (a < b) {
            u64 mid = (a + b) >> 1;
            if (value_key(tempered(from_ordered_bits(static_cast<unsigned>(mid)), r.temperature)) <= uB) b = mid;
            else a = mid + 1;
        }
        u64 lo = a;
        a = 0;
        b = 1ull << 32;
        while (a < b) {
            u64 mid = (a + b) >> 1;
            if (value_key(tempered(from_ordered_bits(static_cast<unsigned>(mid)), r.temperature)) < uA) b = mid;
            else a = mid + 1;
        }
        u64 hi = a; // one past the last
        r.interval[0] = lo >= hi ? 1u : static_cast<unsigned>(lo);
        r.interval[1] = lo >= hi ? 0u : static_cast<unsigned>(hi - 1);
    }
    __syncthreads();
}

/// Builds level `level`'s histogram of the tokens whose key starts with prefix (one pass over the row).
template <typename S>
static __device__ void build_level(SampleRow<S>& r, int level, const int* prefix) {
    SampleHist h = sample_hist(r.shared, level);
    hist_clear(h, 0);
    unsigned uA = level == 1 ? static_cast<unsigned>(prefix[0]) << 21
                             : (static_cast<unsigned>(prefix[0]) << 21) | (static_cast<unsigned>(prefix[1]) << 10);
    unsigned uB = uA | (level == 1 ? 0x1fffffu : 0x3ffu);
    logit_interval(r, uA, uB); // its barrier also orders the clearing before the adds
    unsigned lo = r.interval[0], hi = r.interval[1];
    int shift = level_shift(level);
    unsigned mask = level_mask(level);
    float temperature = r.temperature, zMax = r.zMax, scale = r.fp.scale;
    int piece = r.fp.piece, cutByWeight = r.cutByWeight;
    u64 cutWeight = r.cutWeight;
    auto add = [&](float x, int j) {
        unsigned o = ordered_bits(x);
        if (o < lo || o > hi) return;
        float z = tempered(x, temperature);
        unsigned u = value_key(z);
        if (u < uA || u > uB) return;
        u64 w = fixed_weight(z, zMax, scale);
        if (cutByWeight && w < cutWeight) return;
        hist_add(h, static_cast<int>((u >> shift) & mask), w, j, piece, true);
    };
    for_each_element(r.row, r.vocab, add);
    __syncthreads();
    r.tag[level] = level == 1 ? prefix[0] : (prefix[0] << 11) | prefix[1];
}

/// The id of the token at running position `target` (the first whose running q exceeds it) in id order, where
/// r.scratch->warp holds each warp share's total of q. One warp walks its share; fallback when none crosses.
template <typename S, typename Q>
static __device__ int select_in_id_order(const SampleRow<S>& r, Q& q, u64 target, int fallback) {
    typedef Vec16<S> V;
    int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    u64 before = 0;
    int owner = -1;
    for (int w = 0; w < warps; w++) {
        if (owner < 0 && before + r.scratch->warp[w] > target) owner = w;
        else if (owner < 0) before += r.scratch->warp[w];
    }
    if (threadIdx.x == 0) *r.result = fallback;
    __syncthreads();
    if (warp == owner) {
        u64 need = target - before;
        auto g = [&](const float* x, int j0, int n) -> bool {
            u64 qs[V::N];
            u64 sum = 0;
#pragma unroll
            for (int k = 0; k < V::N; k++) {
                qs[k] = k < n ? q(x[k], j0 + k) : 0;
                sum += qs[k];
            }
            u64 inclusive = warp_inclusive_u64(sum);
            u64 total = __shfl_sync(OR1_FULL_MASK, inclusive, 31);
            if (total <= need) {
                need -= total;
                return false;
            }
            u64 running = inclusive - sum;
            if (running <= need && need < inclusive) {
#pragma unroll
                for (int k = 0; k < V::N; k++) {
                    running += qs[k];
                    if (k < n && running > need) {
                        *r.result = j0 + k;
                        break;
                    }
                }
            }
            return true;
        };
        walk_share(r.row, r.vocab, g);
    }
    __syncthreads();
    return *r.result;
}

/// Per-warp totals of q over each warp's share (one pass), into r.scratch->warp.
template <typename S, typename Q>
static __device__ void warp_share_totals(const SampleRow<S>& r, Q& q) {
    u64 sum = 0;
    auto add = [&](float x, int j) { sum += q(x, j); };
    for_each_element(r.row, r.vocab, add);
    post_u64x2(sum, 0, r.scratch);
}

/// The i-th token (from 0, in id order) whose tempered logit has key u.
template <typename S>
static __device__ int nth_with_key(SampleRow<S>& r, unsigned u, u64 i) {
    logit_interval(r, u, u);
    unsigned lo = r.interval[0], hi = r.interval[1];
    float temperature = r.temperature;
    auto q = [&](float x, int) -> u64 {
        unsigned o = ordered_bits(x);
        return o >= lo && o <= hi && value_key(tempered(x, temperature)) == u ? 1ull : 0ull;
    };
    warp_share_totals(r, q);
    return select_in_id_order(r, q, i, r.fallback);
}

/// Finds the bound (by count or weight) or the drawn token (kWeightAbove) under `clip`, digit by digit, reusing
/// the histograms that hold the prefix it needs and building the others.
template <typename S>
static __device__ OR1_NOINLINE void descend(SampleRow<S>& r, int kind, u64 threshold, const SampleBound& clip, SampleBound& out, int& token) {
    int prefix[3] = {0, 0, 0};
    u64 countBase = 0, weightBase = 0;
    out.active = 1;
    out.whole = 0;
    token = r.fallback;
    for (int level = 0; level < 3; level++) {
        if (level > 0) {
            int tag = level == 1 ? prefix[0] : (prefix[0] << 11) | prefix[1];
            if (r.tag[level] != tag) build_level(r, level, prefix);
        }
        SampleHist h = sample_hist(r.shared, level);
        SampleClip c = clip_at(clip, level, prefix);
        find_crossing(h, r.fp.piece, kind, threshold, countBase, weightBase, c, r.crossing, r.scratch);
        SampleCrossing x = *r.crossing;
        out.level = level;
        if (x.bucket < 0) { // only for inputs outside the rules (NaN)
            out.count = countBase;
            out.weight = weightBase > 0 ? weightBase : 1;
            out.whole = 1;
            return;
        }
        prefix[level] = x.bucket;
        out.digit[level] = x.bucket;
        out.countBefore[level] = countBase = x.countBefore;
        out.weightBefore[level] = weightBase = x.weightBefore;
        if (level == 2) {
            unsigned u = (static_cast<unsigned>(prefix[0]) << 21) | (static_cast<unsigned>(prefix[1]) << 10) | static_cast<unsigned>(prefix[2]);
            u64 w = fixed_weight(key_value(u), r.zMax, r.fp.scale);
            if (kind == kByCount) {
                out.count = threshold;
                out.weight = weightBase + (threshold - countBase) * w;
            } else if (kind == kWeightAtLeast) {
                u64 ties = w > 0 ? (threshold - weightBase + w - 1) / w : x.count;
                out.count = countBase + ties;
                out.weight = weightBase + ties * w;
            } else {
                u64 i = w > 0 ? (threshold - weightBase) / w : 0;
                token = i == 0 ? static_cast<int>(x.minId) : nth_with_key(r, u, i);
            }
            return;
        }
        if (!x.clipped && x.count == 1) {
            out.whole = 1;
            out.count = countBase + 1;
            out.weight = weightBase + x.weight;
            token = static_cast<int>(x.minId);
            return;
        }
        if (kind == kByCount && !x.clipped && countBase + x.count == threshold) {
            out.whole = 1;
            out.count = threshold;
            out.weight = weightBase + x.weight;
            return;
        }
    }
}

// ------------------------------------------------------------------ the kernel

/// Launch: grid = rows, one block per row; blockDim.x 32 (vocabularies up to 1024) or 256, a power of two (it divides
/// the histograms' bucket counts). Dynamic shared memory SAMPLE_SHARED_BYTES when the call filters (top-k < vocab or
/// top-p < 1) at a temperature above 0, else 0. logits [rows, vocab] in S; tokens and logProbs [rows]; truncatedMass
/// [rows] or null: the share of the total weight outside the tokens the draw chose from (top-k, then the nucleus), the
/// mass that top-k/top-p cut from the full distribution whose log-prob is returned (0 unfiltered and greedy). streams, when not
/// null, holds (request id, position) per row and row b draws from counter_hash(seed, position, request id): its request's
/// stream, whatever else shares the batch; otherwise from counter_hash(seed, counter, b).
template <typename S>
static __device__ void sample_rows(const S* __restrict__ logits, int rows, int vocab, float temperature, float topP, int topK,
                                   u64 seed, u64 counter, const int* __restrict__ streams, int* __restrict__ tokens,
                                   float* __restrict__ logProbs, float* __restrict__ truncatedMass) {
    __shared__ double dscratch[32];
    __shared__ SampleScratch scratch;
    __shared__ SampleCrossing crossing;
    __shared__ int result;
    __shared__ unsigned interval[2];
    int b = blockIdx.x;
    if (b >= rows) return;
    const S* row = logits + static_cast<long long>(b) * vocab;
    int tid = threadIdx.x;
    bool topKOn = topK > 0 && topK < vocab, topPOn = topP < 1.f;
    bool filter = temperature != 0.f && (topKOn || topPOn);

    SampleRow<S> r;
    r.row = row;
    r.vocab = vocab;
    r.temperature = temperature;
    r.fp = sample_fixed_point(vocab);
    r.cutByWeight = 0;
    r.cutWeight = 0;
    r.cutDigit = 0;
    r.shared = nullptr;
    r.tag[0] = r.tag[1] = r.tag[2] = -1;
    r.crossing = &crossing;
    r.scratch = &scratch;
    r.result = &result;
    r.interval = interval;
    if (filter) {
        OR1_DYNAMIC_SHARED(unsigned, histograms);
        r.shared = histograms;
        hist_clear(sample_hist(r.shared, 0), 0);
        if (topKOn) hist_clear(sample_hist(r.shared, 1), 0);
        __syncthreads();
    }
    SampleHist h1 = sample_hist(r.shared, 0), h2 = sample_hist(r.shared, 1);

    // Pass 1: the largest logit and its first id (the greedy token, and the fallback), as one key: ordered bits high,
    // the id's complement low; NaN never wins. With top-k, also the count histogram of the first digit.
    u64 best = 0;
    auto pass1 = [&](float x, int j) {
        u64 key = x == x ? (static_cast<u64>(ordered_bits(x)) << 32) | (0xffffffffu - static_cast<unsigned>(j)) : 0;
        best = key > best ? key : best;
        if (filter && topKOn) atomicAdd(h1.count + (value_key(tempered(x, temperature)) >> 21), 1u);
    };
    for_each_element(row, vocab, pass1);
    best = block_max_u64(best, &scratch);
    float xMax = best ? from_ordered_bits(static_cast<unsigned>(best >> 32)) : OR1_NEG_INF;
    int first = best ? static_cast<int>(0xffffffffu - static_cast<unsigned>(best)) : 0;
    r.fallback = first;

    if (temperature == 0.f) {
        // Greedy: the first maximum, and log softmax at T = 1.
        double total = 0.0;
        auto sum = [&](float x, int) { total += expf(x - xMax); };
        for_each_element(row, vocab, sum);
        total = block_sum_d(total, dscratch);
        if (tid == 0) {
            tokens[b] = first;
            logProbs[b] = to_f32(row[first]) - static_cast<float>(xMax + log(total));
            if (truncatedMass != nullptr) truncatedMass[b] = 0.f;
        }
        return;
    }

    // Division is monotone, so the largest tempered logit is the tempered largest logit.
    float zMax = tempered(xMax, temperature);
    r.zMax = zMax;
    float scale = r.fp.scale;
    int piece = r.fp.piece;
    u64 bits53 = (streams != nullptr
                      ? counter_hash(seed, static_cast<unsigned>(streams[2 * b + 1]), static_cast<unsigned>(streams[2 * b]))
                      : counter_hash(seed, counter, static_cast<u64>(b))) >> 11;
    u64 total = 0, drawWeight = 0;
    int token;

    if (!filter) {
        // Pass 2: the total weight per warp share; then one warp walks its share to the drawn token.
        auto q = [&](float x, int) -> u64 { return fixed_weight(tempered(x, temperature), zMax, scale); };
        warp_share_totals(r, q);
        for (int w = 0; w < static_cast<int>(blockDim.x >> 5); w++) total += scratch.warp[w];
        token = select_in_id_order(r, q, scale_uniform(total, bits53), first);
        drawWeight = total;
    } else {
        if (topKOn) {
            // The first digit of the top-k boundary bounds which tokens can matter.
            SampleClip none;
            none.applies = 0;
            find_crossing(h1, piece, kByCount, static_cast<u64>(topK), 0, 0, none, r.crossing, r.scratch);
            r.cutDigit = crossing.bucket < 0 ? 2047u : static_cast<unsigned>(crossing.bucket);
        } else {
            // Tokens lighter than this weigh less than (1 - p) of the total together (V of them below (1 - p) 2^F / V).
            double bound = (1.0 - static_cast<double>(topP)) * static_cast<double>(scale) / static_cast<double>(vocab);
            r.cutByWeight = 1;
            r.cutWeight = bound >= 1.0 ? static_cast<u64>(bound) - 1 : 0;
        }
        // Pass 2: the total weight and the first-digit histogram of the tokens that can matter (with top-k: their
        // weights and smallest ids, and the second digit inside the top-k bucket).
        unsigned cutDigit = r.cutDigit;
        int cutByWeight = r.cutByWeight;
        u64 cutWeight = r.cutWeight;
        u64 sum = 0;
        auto pass2 = [&](float x, int j) {
            float z = tempered(x, temperature);
            u64 w = fixed_weight(z, zMax, scale);
            sum += w;
            unsigned u = value_key(z);
            unsigned d = u >> 21;
            if (cutByWeight ? w < cutWeight : d > cutDigit) return;
            hist_add(h1, static_cast<int>(d), w, j, piece, !topKOn);
            if (topKOn && d == cutDigit) hist_add(h2, static_cast<int>((u >> 10) & 2047u), w, j, piece, true);
        };
        for_each_element(row, vocab, pass2);
        total = block_sum_u64(sum, &scratch);
        r.tag[0] = 0;
        if (topKOn) r.tag[1] = static_cast<int>(r.cutDigit);

        SampleBound none;
        none.active = 0;
        none.level = 0;
        SampleBound kept = none, nucleus;
        int unused;
        u64 keptWeight = total;
        if (topKOn) {
            descend(r, kByCount, static_cast<u64>(topK), none, kept, unused);
            keptWeight = kept.weight;
        }
        const SampleBound* inner = &kept;
        u64 nucleusWeight = keptWeight;
        if (topPOn) {
            descend(r, kWeightAtLeast, ceil_mul_fraction(topP, keptWeight), kept, nucleus, unused);
            nucleusWeight = nucleus.weight;
            inner = &nucleus;
        }
        SampleBound drawn;
        descend(r, kWeightAbove, scale_uniform(nucleusWeight, bits53), *inner, drawn, token);
        drawWeight = nucleusWeight;
    }

    if (tid == 0) {
        if (token < 0 || token >= vocab) token = first;
        float lse = static_cast<float>(static_cast<double>(zMax) + (log(static_cast<double>(total)) - r.fp.fraction * SAMPLE_LN2));
        tokens[b] = token;
        logProbs[b] = tempered(to_f32(row[token]), temperature) - lse;
        if (truncatedMass != nullptr)
            truncatedMass[b] = total == 0 ? 0.f : static_cast<float>(1.0 - static_cast<double>(drawWeight) / static_cast<double>(total));
    }
}

OR1_BOUNDED_STORAGE_KERNELS(sample_rows, (256),
                            (const S* __restrict__ logits, int rows, int vocab, float temperature, float topP, int topK,
                             unsigned long long seed, unsigned long long counter, const int* __restrict__ streams,
                             int* __restrict__ tokens, float* __restrict__ logProbs, float* __restrict__ truncatedMass),
                            (logits, rows, vocab, temperature, topP, topK, seed, counter, streams, tokens, logProbs, truncatedMass))
