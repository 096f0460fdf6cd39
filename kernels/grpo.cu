// grpo.cu — GRPO group-relative advantages, per-segment broadcast, and the MAGIC policy loss
// (Skywork-OR1 eq. 3.1) with its gradient. Reference: src/OR1.Native/Cpu/Grpo.cs.
#include "common.cuh"

/// A = (r - mean) / (std + eps) per group with the unbiased std; a group of one uses mean 0, std 1
/// (verl's rule). Groups are small: one thread per group, in double. Launch: 1-D grid-stride over groups, blocks of up to 64 threads.
OR1_BOUNDED_KERNEL(grpo_advantages, (64), (const float* __restrict__ rewards, const int* __restrict__ offsets, int groups,
                                           float epsilon, float* __restrict__ advantages)) {
    OR1_GRID_STRIDE(g, groups) {
        int start = offsets[g], count = offsets[g + 1] - start;
        if (count == 0) continue;
        double mean = 0.0, stdev = 1.0;
        if (count > 1) {
            double sum = 0.0;
            for (int i = 0; i < count; i++) sum += rewards[start + i];
            mean = sum / count;
            double squares = 0.0;
            for (int i = 0; i < count; i++) {
                double d = rewards[start + i] - mean;
                squares += d * d;
            }
            stdev = sqrt(squares / (count - 1));
        }
        for (int i = 0; i < count; i++)
            advantages[start + i] = static_cast<float>((rewards[start + i] - mean) / (stdev + epsilon));
    }
}

/// output[t] = values[s] for t in segment s. Launch: grid-stride over segments, threads (up to 128) over the segment.
OR1_BOUNDED_KERNEL(broadcast_segments, (128), (const float* __restrict__ values, const int* __restrict__ offsets, int segments,
                                               float* __restrict__ output)) {
    for (int s = blockIdx.x; s < segments; s += gridDim.x) {
        float v = values[s];
        for (int t = offsets[s] + threadIdx.x; t < offsets[s + 1]; t += blockDim.x) output[t] = v;
    }
}

struct TokenTerms {
    float ratio, surrogate;
    bool clipped;
};

static __device__ __forceinline__ TokenTerms token_terms(float logProb, float oldLogProb, float advantage, float clipLow, float clipHigh) {
    TokenTerms t;
    t.ratio = expf(logProb - oldLogProb);
    float unclipped = t.ratio * advantage;
    float clippedRatio = fminf(fmaxf(t.ratio, 1.0f - clipLow), 1.0f + clipHigh);
    float clipped = clippedRatio * advantage;
    // Ties go to the unclipped branch, whose gradient is rho * A (torch's clamp passes it at the boundary).
    t.clipped = clipped < unclipped;
    t.surrogate = t.clipped ? clipped : unclipped;
    return t;
}

// verl's low_var_kl clamps the gap ref - logp to [-20, 20] and k3 to [-10, 10], so that one token far from
// the reference cannot make the loss Inf (exp(89) overflows fp32, exp(710) fp64).
#define GRPO_KL_GAP_LIMIT 20.0f
#define GRPO_K3_LIMIT 10.0f

/// k3 = clamp(exp(d) - d - 1, -10, 10), d = clamp(ref - logp, -20, 20), in double as the sum it joins.
static __device__ __forceinline__ double clamped_k3(float referenceLogProb, float logProb) {
    const double gapLimit = GRPO_KL_GAP_LIMIT, k3Limit = GRPO_K3_LIMIT;
    double d = fmin(fmax(static_cast<double>(referenceLogProb - logProb), -gapLimit), gapLimit);
    return fmin(fmax(exp(d) - d - 1.0, -k3Limit), k3Limit);
}

/// dk3/dlogp = 1 - exp(ref - logp) where both clamps pass the gradient (torch: min <= x <= max), else 0.
/// k3 >= 0, so only its upper clamp can stop it. A NaN or Inf gap fails the tests and gives 0.
static __device__ __forceinline__ float clamped_k3_gradient(float referenceLogProb, float logProb) {
    float d = referenceLogProb - logProb;
    float e = expf(d);
    bool passes = d >= -GRPO_KL_GAP_LIMIT && d <= GRPO_KL_GAP_LIMIT && e - d - 1.0f <= GRPO_K3_LIMIT;
    return passes ? 1.0f - e : 0.0f;
}

/// lossTerms = [total, policy gradient, entropy, kl, clip fraction, clip fraction low, clip fraction high,
/// ppo_kl] (PolicyLossTerms), sums in double over a fixed partition (deterministic). referenceLogProbs may
/// be null when klCoefficient is 0. Launch: exactly one block, blockDim a multiple of 32 up to 256.
OR1_BOUNDED_KERNEL(policy_loss_forward, (256), (const float* __restrict__ logProbs, const float* __restrict__ oldLogProbs,
                                                const float* __restrict__ advantages, const float* __restrict__ entropy,
                                                const float* __restrict__ weights, const float* __restrict__ referenceLogProbs,
                                                float clipLow, float clipHigh, float entropyCoefficient, float klCoefficient,
                                                int count, float* __restrict__ lossTerms)) {
    __shared__ double scratch[32];
    double pg = 0.0, ent = 0.0, kl = 0.0, clippedLow = 0.0, clippedHigh = 0.0, ppoKl = 0.0;
    bool useKl = klCoefficient != 0.f;
    for (int t = threadIdx.x; t < count; t += blockDim.x) {
        float w = weights[t];
        if (w == 0.f) continue;
        float logProb = logProbs[t], oldLogProb = oldLogProbs[t];
        TokenTerms terms = token_terms(logProb, oldLogProb, advantages[t], clipLow, clipHigh);
        pg -= static_cast<double>(w) * terms.surrogate;
        ent += static_cast<double>(w) * entropy[t];
        // A clipped token's ratio lies outside [1 - clipLow, 1 + clipHigh] (clamp changed it): not below is above.
        if (terms.clipped) {
            if (terms.ratio < 1.0f - clipLow) clippedLow += w;
            else clippedHigh += w;
        }
        // In double, where the difference of two floats is exact, as in the reference.
        ppoKl += w * (static_cast<double>(oldLogProb) - logProb);
        if (useKl) kl += w * clamped_k3(referenceLogProbs[t], logProb);
    }
    pg = block_sum_d(pg, scratch);
    ent = block_sum_d(ent, scratch);
    kl = block_sum_d(kl, scratch);
    clippedLow = block_sum_d(clippedLow, scratch);
    clippedHigh = block_sum_d(clippedHigh, scratch);
    ppoKl = block_sum_d(ppoKl, scratch);
    if (threadIdx.x == 0) {
        lossTerms[1] = static_cast<float>(pg);
        lossTerms[2] = static_cast<float>(ent);
        lossTerms[3] = static_cast<float>(kl);
        lossTerms[4] = static_cast<float>(clippedLow + clippedHigh);
        lossTerms[5] = static_cast<float>(clippedLow);
        lossTerms[6] = static_cast<float>(clippedHigh);
        lossTerms[7] = static_cast<float>(ppoKl);
        lossTerms[0] = static_cast<float>(pg - entropyCoefficient * ent + klCoefficient * kl);
    }
}

/// dL/dlogp and dL/dH per token (overwrite). Launch: 1-D grid-stride over tokens, blocks of up to 256 threads.
OR1_BOUNDED_KERNEL(policy_loss_backward, (256), (const float* __restrict__ logProbs, const float* __restrict__ oldLogProbs,
                                                 const float* __restrict__ advantages, const float* __restrict__ weights,
                                                 const float* __restrict__ referenceLogProbs, float clipLow, float clipHigh,
                                                 float entropyCoefficient, float klCoefficient, int count,
                                                 float* __restrict__ dLogProbs, float* __restrict__ dEntropy)) {
    bool useKl = klCoefficient != 0.f;
    OR1_GRID_STRIDE(t, count) {
        float w = weights[t];
        TokenTerms terms = token_terms(logProbs[t], oldLogProbs[t], advantages[t], clipLow, clipHigh);
        // d(rho A)/dlogp = rho A on the unclipped branch; the clipped branch is constant in logp.
        float d = terms.clipped ? 0.f : -w * terms.ratio * advantages[t];
        if (useKl) d += w * klCoefficient * clamped_k3_gradient(referenceLogProbs[t], logProbs[t]);
        dLogProbs[t] = d;
        dEntropy[t] = -w * entropyCoefficient;
    }
}
