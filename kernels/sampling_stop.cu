// sampling_stop.cu — the decode loop's stop rules on the device (the rollout engine, Qwen2Generator): after a step's
// sampler, each row's token is checked against the stop tokens and the row's remaining length, and a row that goes on
// gets the next step's inputs in place. The engine can then run several decode steps (graph replays) back to back and
// read the emitted tokens once after them, instead of waiting for the device after every step to decide on the host.
// Reference: src/OR1.Native/Cpu/DecodeAdvance.cs (the same rules, row by row).
//
// A row's state is its remaining count: > 0 running (tokens it may still sample), 0 stopped at its length limit, -1
// stopped at a stop token. A row stopped before the call emits -1 and writes its later keys to the sink row (its pages
// may be released by the host after the run, and a stopped row's next position may have no page). One thread per row:
// a step has at most a few hundred rows and a handful of stop tokens, so the kernel is one short launch; what it saves
// is the host round trip per step, not bandwidth.
#include "common.cuh"

/// Launch: any 1-D grid of 1-D blocks of up to 128 threads (grid-stride over rows). With advance == 0 only the stop
/// rules run (tokens, positions, lengths, streams, cacheRows and table may be null). errors/check: a running row whose
/// next position has no page in its table row is reported as (row, position) and writes the sink row instead.
OR1_BOUNDED_KERNEL(decode_advance, (128), (const int* __restrict__ sampled, const int* __restrict__ stopTokens, int stopCount,
                                           int* __restrict__ remaining, int* __restrict__ emitted, int rows, int advance,
                                           int* __restrict__ tokens, int* __restrict__ positions, int* __restrict__ lengths,
                                           int* __restrict__ streams, int* __restrict__ cacheRows, const int* __restrict__ table,
                                           int tableWidth, int pageSize, int sinkRow, unsigned long long* errors, unsigned check)) {
    for (int row = blockIdx.x * blockDim.x + threadIdx.x; row < rows; row += gridDim.x * blockDim.x) {
        int left = remaining[row];
        if (left <= 0) {
            emitted[row] = -1;
            if (advance) cacheRows[row] = sinkRow;
            continue;
        }
        int token = sampled[row];
        emitted[row] = token;
        bool stop = false;
        for (int s = 0; s < stopCount; s++) stop |= stopTokens[s] == token;
        left = stop ? -1 : left - 1;
        remaining[row] = left;
        if (!advance) continue;
        if (left <= 0) {
            cacheRows[row] = sinkRow;
            continue;
        }
        int position = positions[row] + 1;
        int slot = position / pageSize;
        int page = slot < tableWidth ? table[static_cast<long long>(row) * tableWidth + slot] : -1;
        if (page < 0) {
            report_bad_index(errors, check, row, position);
            cacheRows[row] = sinkRow;
            continue;
        }
        tokens[row] = token;
        positions[row] = position;
        lengths[row] = position + 1;
        streams[2 * row + 1] += 1;
        cacheRows[row] = page * pageSize + position % pageSize;
    }
}
