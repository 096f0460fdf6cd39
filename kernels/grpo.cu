// grpo.cu — GRPO group-relative advantages, per-segment broadcast, and the MAGIC policy loss
// (Skywork-OR1 eq. 3.1) with its gradient. Reference: src/OR1.Native/Cpu/Grpo.cs.
#include "common.cuh"

/// A = (r - mean) / (std + eps) per group with the unbiased std; a group of one uses mean 0, std 1
/// (verl's rule). Groups are small: one thread per group, in double. Launch: 1-D grid-stride over groups.
OR1_KERNEL void grpo_advantages(const float* __restrict__ rewards, const int* __restrict__ offsets, int groups,
                                float epsilon, float* __restrict__ advantages) {
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
OR1_REGISTER(grpo_advantages)

/// output[t] = values[s] for t in segment s. Launch: grid-stride over segments, threads over the segment.
OR1_KERNEL void broadcast_segments(const float* __restrict__ values, const int* __restrict__ offsets, int segments,
                                   float* __restrict__ output) {
    for (int s = blockIdx.x; s < segments; s += gridDim.x) {
        float v = values[s];
        for (int t = offsets[s] + threadIdx.x; t < offsets[s + 1]; t += blockDim.x) output[t] = v;
    }
}
OR1_REGISTER(broadcast_segments)

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

/// lossTerms = [total, policy gradient, entropy, kl, clip fraction], sums in double over a fixed
/// partition (deterministic). referenceLogProbs may be null when klCoefficient is 0.
/// Launch: exactly one block, blockDim a multiple of 32.
OR1_KERNEL void policy_loss_forward(const float* __restrict__ logProbs, const float* __restrict__ oldLogProbs,
                                    const float* __restrict__ advantages, const float* __restrict__ entropy,
                                    const float* __restrict__ weights, const float* __restrict__ referenceLogProbs,
                                    float clipLow, float clipHigh, float entropyCoefficient, float klCoefficient,
                                    int count, float* __restrict__ lossTerms) {
    __shared__ double scratch[32];
    double pg = 0.0, ent = 0.0, kl = 0.0, clippedWeight = 0.0;
    bool useKl = klCoefficient != 0.f;
    for (int t = threadIdx.x; t < count; t += blockDim.x) {
        float w = weights[t];
        if (w == 0.f) continue;
        TokenTerms terms = token_terms(logProbs[t], oldLogProbs[t], advantages[t], clipLow, clipHigh);
        pg -= static_cast<double>(w) * terms.surrogate;
        ent += static_cast<double>(w) * entropy[t];
        if (terms.clipped) clippedWeight += w;
        if (useKl) {
            double diff = referenceLogProbs[t] - logProbs[t];
            kl += w * (exp(diff) - diff - 1.0);
        }
    }
    pg = block_sum_d(pg, scratch);
    ent = block_sum_d(ent, scratch);
    kl = block_sum_d(kl, scratch);
    clippedWeight = block_sum_d(clippedWeight, scratch);
    if (threadIdx.x == 0) {
        lossTerms[1] = static_cast<float>(pg);
        lossTerms[2] = static_cast<float>(ent);
        lossTerms[3] = static_cast<float>(kl);
        lossTerms[4] = static_cast<float>(clippedWeight);
        lossTerms[0] = static_cast<float>(pg - entropyCoefficient * ent + klCoefficient * kl);
    }
}
OR1_REGISTER(policy_loss_forward)

/// dL/dlogp and dL/dH per token (overwrite). Launch: 1-D grid-stride over tokens.
OR1_KERNEL void policy_loss_backward(const float* __restrict__ logProbs, const float* __restrict__ oldLogProbs,
                                     const float* __restrict__ advantages, const float* __restrict__ weights,
                                     const float* __restrict__ referenceLogProbs, float clipLow, float clipHigh,
                                     float entropyCoefficient, float klCoefficient, int count,
                                     float* __restrict__ dLogProbs, float* __restrict__ dEntropy) {
    bool useKl = klCoefficient != 0.f;
    OR1_GRID_STRIDE(t, count) {
        float w = weights[t];
        TokenTerms terms = token_terms(logProbs[t], oldLogProbs[t], advantages[t], clipLow, clipHigh);
        // d(rho A)/dlogp = rho A on the unclipped branch; the clipped branch is constant in logp.
        float d = terms.clipped ? 0.f : -w * terms.ratio * advantages[t];
        if (useKl) d += w * klCoefficient * (1.0f - expf(referenceLogProbs[t] - logProbs[t]));
        dLogProbs[t] = d;
        dEntropy[t] = -w * entropyCoefficient;
    }
}
OR1_REGISTER(policy_loss_backward)
