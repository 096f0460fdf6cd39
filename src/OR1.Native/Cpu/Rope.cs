using System.Runtime.Intrinsics;

namespace OR1.Native.Cpu;

/// <summary>
/// Rotary embedding, HF rotate_half convention. Angles are computed exactly as HF Qwen2 does, in fp32:
/// inv_freq[i] = 1 / theta^(2i/D), angle = (float)pos * inv_freq[i], then cos/sin of that fp32 angle.
/// The cos/sin values are cached per (theta, D) in a table grown to the largest position seen, because
/// computing two transcendental functions per pair would make this memory-bound op compute-bound on a CPU.
/// </summary>
internal static unsafe class CpuRope
{
    public static void Apply(float* input, int* positions, int rows, int numHeads, int headDim, float* output,
        RopeTable table, bool inverse)
    {
        int half = headDim / 2;
        int width = numHeads * headDim;
        int maxPosition = 0;
        for (int n = 0; n < rows; n++)
        {
            if (positions[n] < 0)
                throw new ArgumentException($"{(inverse ? "RopeBackward" : "RopeForward")}: argument 'positions' has {positions[n]} at row {n}; positions must be non-negative", "positions");
            maxPosition = Math.Max(maxPosition, positions[n]);
        }
        var (cosTable, sinTable) = table.Ensure(maxPosition + 1);
        float sign = inverse ? -1f : 1f;
        CpuParallel.For(rows, CpuElementwise.RowGrain(width), (start, end) =>
        {
            fixed (float* cosBase = cosTable)
            fixed (float* sinBase = sinTable)
            {
                for (int n = start; n < end; n++)
                {
                    float* cos = cosBase + (long)positions[n] * half;
                    float* sin = sinBase + (long)positions[n] * half;
                    float* xRow = input + (long)n * width;
                    float* yRow = output + (long)n * width;
                    for (int h = 0; h < numHeads; h++)
                        RotateHead(xRow + h * headDim, yRow + h * headDim, cos, sin, half, sign);
                }
            }
        });
    }

    private static void RotateHead(float* x, float* y, float* cos, float* sin, int half, float sign)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s = Vector256.Create(sign);
            for (; i + 8 <= half; i += 8)
            {
                var x1 = Vector256.Load(x + i);
                var x2 = Vector256.Load(x + half + i);
                var c = Vector256.Load(cos + i);
                var sn = Vector256.Load(sin + i) * s;
                // load both halves before storing: output may alias input
                (x1 * c - x2 * sn).Store(y + i);
                (x2 * c + x1 * sn).Store(y + half + i);
            }
        }
        for (; i < half; i++)
        {
            float x1 = x[i], x2 = x[half + i], c = cos[i], sn = sign * sin[i];
            y[i] = x1 * c - x2 * sn;
            y[half + i] = x2 * c + x1 * sn;
        }
    }
}

/// <summary>cos/sin of position * inv_freq for one (theta, head dim), grown on demand, thread-safe.</summary>
internal sealed class RopeTable
{
    private readonly float _theta;
    private readonly int _headDim;
    private readonly object _lock = new();
    private float[] _cos = [];
    private float[] _sin = [];
    private int _positions;

    public RopeTable(float theta, int headDim)
    {
        _theta = theta;
        _headDim = headDim;
    }

    public (float[] Cos, float[] Sin) Ensure(int positions)
    {
        lock (_lock)
        {
            if (positions <= _positions) return (_cos, _sin);
            // Grow geometrically so that decoding one position at a time does not rebuild the table each step.
            int capacity = Math.Max(positions, Math.Max(64, _positions * 2));
            int half = _headDim / 2;
            var invFreq = new float[half];
            for (int i = 0; i < half; i++) invFreq[i] = 1f / MathF.Pow(_theta, 2 * i / (float)_headDim);
            var cos = new float[(long)capacity * half];
            var sin = new float[(long)capacity * half];
            for (int p = 0; p < capacity; p++)
            {
                for (int i = 0; i < half; i++)
                {
                    float angle = p * invFreq[i];
                    cos[(long)p * half + i] = MathF.Cos(angle);
                    sin[(long)p * half + i] = MathF.Sin(angle);
                }
            }
            _cos = cos;
            _sin = sin;
            _positions = capacity;
            return (_cos, _sin);
        }
    }
}
