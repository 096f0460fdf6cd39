using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native.Cpu;

/// <summary>
/// Finds positions in one row's key order (tempered logit descending, id ascending) by running count or weight,
/// exactly and without sorting: the top-k boundary, the nucleus boundary, the drawn token (<see cref="CpuSampling"/>).
/// <para>A GPU block refines the whole row digit by digit with shared-memory histograms (kernels/sampling.cu). On a
/// CPU core a histogram update is a scattered read-modify-write, so instead a sample (every 32nd token, taken while
/// the relative probabilities e are computed) estimates where each target lies, as a bracket of digits of e's bits
/// (32 per octave); one vectorised pass over e sums the count and weight of every kept token above each bracket and
/// gathers the few in it, for up to two targets at once (the nucleus boundary and the draw); the gathered tokens, in
/// id order, are refined by an 8-bit radix select on their keys, which ends in the target's key with its ties in id
/// order. e does not increase along the key order and equal keys have equal e, so a bracket's region is a contiguous
/// stretch of the key order and the sums above it are exact. A bracket that misses (the sums above it already
/// reach the target, or all of it does not) is moved and widened and the pass repeats.</para>
/// </summary>
internal sealed unsafe class CpuSamplingSelect
{
    public enum Target { Count, WeightAtLeast, WeightAbove }

    /// <summary>A prefix of the key order: everything up to and including <see cref="Key"/> (value key high, id low).</summary>
    public readonly struct Bound(ulong key, ulong count, ulong weight, float e)
    {
        public static Bound None => default;

        public bool Active { get; } = true;
        public ulong Key { get; } = key;
        public ulong Count { get; } = count;
        public ulong Weight { get; } = weight;
        /// <summary>e of the last kept token: nothing below it is kept.</summary>
        public float E { get; } = e;
        public int Token => (int)(uint)Key;
    }

    /// <summary>Tokens sampled while e is computed: one every this many (a multiple of the 8-lane vector).</summary>
    public const int SampleStride = 32;

    private const int DigitShift = 18;      // e's bits >> 18: exponent and 5 mantissa bits
    private const int Digits = 4096;        // e <= 1 has digits up to 0x3F800000 >> 18 = 4064
    private const double Deviations = 3;    // bracket half-width in estimated standard deviations

    [ThreadStatic] private static CpuSamplingSelect? t_instance;

    /// <summary>e per token, padded with zeros to a multiple of 16 (written by <see cref="CpuSampling"/>).</summary>
    public float[] Exps { get; private set; } = [];

    /// <summary>e of every <see cref="SampleStride"/>-th token (written by <see cref="CpuSampling"/>).</summary>
    public float[] SampledExps { get; private set; } = [];

    /// <summary>
    /// The largest e of each block of <see cref="CpuSampling.WalkBlock"/> tokens (written by <see cref="CpuSampling"/>): a pass
    /// over e skips the blocks that lie wholly below its brackets, which in a model's row (a few likely tokens) is nearly all.
    /// </summary>
    public float[] BlockMaxExps { get; private set; } = [];

    /// <summary>The weight of each block of <see cref="CpuSampling.WalkBlock"/> tokens (the unfiltered draw's scratch).</summary>
    public ulong[] Blocks { get; private set; } = [];

    private readonly int[] _sampleCount = new int[Digits];
    private readonly double[] _sampleWeight = new double[Digits];
    private readonly double[] _sampleSquares = new double[Digits];
    private readonly int[] _radixCount = new int[256];
    private readonly ulong[] _radixWeight = new ulong[256];
    private readonly Gathered[] _gathered = [new(), new()];

    private float* _x;
    private int _vocab;
    private float _t;
    private float _scale;
    private ulong _total;
    private int _sampleLow = Digits, _sampleHigh = Digits - 1; // the digits the last sample occupies (none yet)
    private bool _sampled;                                      // the sample's histogram is this row's

    /// <summary>Tokens a pass gathered for one bracket, with the exact count and weight of the kept tokens above it.</summary>
    private sealed class Gathered
    {
        public int[] Ids = [];
        public ulong[] Keys = [];
        public ulong[] Weights = [];
        public int Count;
        public ulong CountAbove, WeightAbove;
        public int Low, High;     // its digits
        public float ELow, EHigh; // the e range the last pass gathered (the digits', clamped to the limit)
    }

    public static CpuSamplingSelect ForThisThread(int vocab)
    {
        var s = t_instance ??= new CpuSamplingSelect();
        int padded = (vocab + 15) & ~15;
        if (s.Exps.Length < padded)
        {
            s.Exps = new float[padded];
            s.SampledExps = new float[padded / SampleStride + 1];
            s.Blocks = new ulong[(vocab + CpuSampling.WalkBlock - 1) / CpuSampling.WalkBlock];
            s.BlockMaxExps = new float[s.Blocks.Length];
            s._headMaxima = new float[s.Blocks.Length];
            foreach (var g in s._gathered)
            {
                // 16 of slack: the packed stores write whole vectors.
                g.Ids = new int[padded + 16];
                g.Keys = new ulong[padded];
                g.Weights = new ulong[padded];
            }
        }
        return s;
    }

    /// <summary>
    /// Starts a row whose <see cref="Exps"/>, <see cref="SampledExps"/> and <see cref="BlockMaxExps"/> are computed:
    /// logits x, temperature t, 2^F, the total weight.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void BeginRow(float* x, int vocab, float t, float scale, ulong total)
    {
        _x = x;
        _vocab = vocab;
        _t = t;
        _scale = scale;
        _total = total;
        _sampled = false;
    }

    /// <summary>The histogram of the row's sample by digit, built when a search first needs it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EnsureSample()
    {
        if (_sampled) return;
        _sampled = true;
        int vocab = _vocab;
        float scale = _scale;
        // Only the digits the last row's sample touched need clearing.
        if (_sampleHigh >= _sampleLow)
        {
            int used = _sampleHigh - _sampleLow + 1;
            Array.Clear(_sampleCount, _sampleLow, used);
            Array.Clear(_sampleWeight, _sampleLow, used);
            Array.Clear(_sampleSquares, _sampleLow, used);
        }
        // Locals, not fields, in the loop: the JIT reloads fields after every array store.
        int lowest = Digits, highest = -1, samples = vocab / SampleStride;
        int[] count = _sampleCount;
        double[] weight = _sampleWeight, squares = _sampleSquares;
        fixed (float* sampled = SampledExps)
            for (int i = 0; i < samples; i++)
            {
                float v = sampled[i];
                if (!(v >= 0f)) continue;
                int d = Digit(v);
                double w = SamplingRules.Weight(v, scale);
                count[d]++;
                weight[d] += w;
                squares[d] += w * w;
                lowest = Math.Min(lowest, d);
                highest = Math.Max(highest, d);
            }
        _sampleLow = lowest;
        _sampleHigh = highest;
    }

    /// <summary>
    /// The first key (within <paramref name="limit"/> when active) at which the running count reaches threshold
    /// (<see cref="Target.Count"/>), the running weight reaches it (<see cref="Target.WeightAtLeast"/>) or exceeds it
    /// (<see cref="Target.WeightAbove"/>); the bound ends there.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Bound Find(Target target, ulong threshold, Bound limit)
    {
        var g = _gathered[0];
        Estimate(target, threshold, limit, _total, g);
        Pass(g, null, limit);
        return Refine(target, threshold, limit, g);
    }

    /// <summary>
    /// The nucleus boundary (running weight reaching <paramref name="goal"/> within <paramref name="limit"/>) and then the
    /// drawn token (running weight exceeding floor(N u / 2^53) within the nucleus of weight N), with one pass for both
    /// when their brackets, estimated before N is known, hold them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public (Bound Nucleus, Bound Drawn) FindNucleusAndDraw(ulong goal, ulong bits53, Bound limit)
    {
        var nucleusBracket = _gathered[0];
        var drawBracket = _gathered[1];
        Estimate(Target.WeightAtLeast, goal, limit, _total, nucleusBracket);
        // The nucleus weighs at least the goal and at most the goal plus one token's weight: its target is close to
        // the draw's final one, and the draw's bracket is checked against the exact one below.
        Estimate(Target.WeightAbove, SamplingRules.ScaleUniform(goal, bits53), limit, _total, drawBracket);
        Pass(nucleusBracket, drawBracket, limit);
        var nucleus = Refine(Target.WeightAtLeast, goal, limit, nucleusBracket);
        ulong target = SamplingRules.ScaleUniform(nucleus.Weight, bits53);
        // The draw's bracket counted every token above it: valid only where all of those are in the nucleus.
        if (nucleus.E <= drawBracket.EHigh && Hit(Target.WeightAbove, target, drawBracket, nucleus))
            return (nucleus, Resolve(Target.WeightAbove, target, nucleus, drawBracket));
        return (nucleus, Find(Target.WeightAbove, target, nucleus));
    }

    /// <summary>More gathered tokens than this and the head search gives way to the sample's brackets.</summary>
    private const int HeadGatherLimit = 16384;

    private readonly int[] _headCount = new int[Digits];
    private readonly ulong[] _headWeight = new ulong[Digits];
    private float[] _headMaxima = [];

    /// <summary>
    /// The drawn token found exactly from the row's head, or -1 when the head does not decide it. The blocks' largest e
    /// (<see cref="BlockMaxExps"/>) are tokens of the row: walking their digits down from the top to the first digit at
    /// which they number top-k (or, without top-k, weigh the nucleus goal) gives a threshold that at least that many
    /// tokens, or that much weight, reach. Every token reaching it lies in a block whose largest e does, so one look at
    /// those blocks gathers a prefix of the key order that holds the top-k boundary, the nucleus boundary and the draw,
    /// with nothing above it, and the radix select resolves the three in it; drawWeight is the weight drawn from (the
    /// nucleus's, else the top-k's). In a model's row (a few likely tokens)
    /// that is a few blocks; in a flat row the maxima weigh too little and the sample's brackets take over.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int TryDrawFromHead(int topK, float topP, ulong bits53, out ulong drawWeight)
    {
        drawWeight = _total;
        const int block = CpuSampling.WalkBlock;
        int blocks = (_vocab + block - 1) / block, highest = -1, lowest = Digits;
        int[] headCount = _headCount;
        ulong[] headWeight = _headWeight;
        float scale = _scale;
        bool decided = true;
        fixed (float* largest = BlockMaxExps)
        {
            for (int b = 0; b < blocks; b++)
            {
                float v = largest[b];
                if (!(v >= 0f))
                {
                    decided = false; // NaN logits: the general search's fallback
                    break;
                }
                int d = Digit(v);
                headCount[d]++;
                headWeight[d] += SamplingRules.Weight(v, scale);
                highest = Math.Max(highest, d);
                lowest = Math.Min(lowest, d);
            }
            int digit = -1;
            ulong goal = topK > 0 ? (ulong)topK : SamplingRules.CeilMulFraction(topP, _total), above = 0;
            for (int d = highest; d >= lowest && decided; d--)
            {
                ulong here = topK > 0 ? (ulong)headCount[d] : headWeight[d];
                if (above + here >= goal)
                {
                    digit = d;
                    break;
                }
                above += here;
            }
            if (highest >= lowest)
            {
                Array.Clear(headCount, lowest, highest - lowest + 1);
                Array.Clear(headWeight, lowest, highest - lowest + 1);
            }
            if (!decided || digit < 0) return -1;
            // The threshold is the maximum in that digit at which the goal is reached, not the digit's floor: a flat row
            // has hundreds of maxima in its top digit, and only the blocks of the first few need a look.
            int m = 0;
            for (int b = 0; b < blocks; b++)
                if (Digit(largest[b]) == digit) _headMaxima[m++] = largest[b];
            var inDigit = _headMaxima.AsSpan(0, m);
            inDigit.Sort();
            float threshold = inDigit[0];
            for (int i = m - 1; i >= 0; i--)
            {
                above += topK > 0 ? 1UL : SamplingRules.Weight(inDigit[i], scale);
                if (above >= goal)
                {
                    threshold = inDigit[i];
                    break;
                }
            }
            if (!GatherFrom(threshold, largest, blocks)) return -1;
        }
        var kept = Bound.None;
        ulong keptWeight = _total;
        if (topK > 0)
        {
            kept = Resolve(Target.Count, (ulong)topK, Bound.None, CopyOfHead());
            keptWeight = kept.Weight;
        }
        var nucleus = kept;
        if (topP < 1f) nucleus = Resolve(Target.WeightAtLeast, SamplingRules.CeilMulFraction(topP, keptWeight), kept, CopyOfHead());
        ulong nucleusWeight = nucleus.Active ? nucleus.Weight : keptWeight;
        drawWeight = nucleusWeight;
        return Resolve(Target.WeightAbove, SamplingRules.ScaleUniform(nucleusWeight, bits53), nucleus, CopyOfHead()).Token;
    }

    /// <summary>
    /// The tokens with e at least <paramref name="threshold"/>, in id order, into the first gathered set with their keys
    /// and weights and nothing above them; false if there are more than <see cref="HeadGatherLimit"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool GatherFrom(float threshold, float* largest, int blocks)
    {
        const int block = CpuSampling.WalkBlock;
        var head = _gathered[0];
        int n = 0, vocab = _vocab;
        var bar = Vector256.Create(threshold);
        fixed (float* e = Exps)
        fixed (int* ids = head.Ids)
        {
            for (int b = 0; b < blocks; b++)
            {
                if (!(largest[b] >= threshold)) continue;
                if (n > HeadGatherLimit) return false;
                // Exps is zero-padded to a multiple of 16: the last vector's lanes past the row are masked off.
                int start = b * block, end = Math.Min(vocab, start + block);
                for (int j = start; j < end; j += 8)
                {
                    uint reach = Vector256.GreaterThanOrEqual(Vector256.Load(e + j), bar).ExtractMostSignificantBits();
                    if (end - j < 8) reach &= (1u << (end - j)) - 1;
                    while (reach != 0)
                    {
                        ids[n++] = j + BitOperations.TrailingZeroCount(reach);
                        reach &= reach - 1;
                    }
                }
            }
            head.CountAbove = 0;
            head.WeightAbove = 0;
            Key(head, n, e, Bound.None);
        }
        return true;
    }

    /// <summary>The head's gathered set copied into the second one, which <see cref="Resolve"/> may reorder.</summary>
    private Gathered CopyOfHead()
    {
        Gathered head = _gathered[0], copy = _gathered[1];
        Array.Copy(head.Keys, copy.Keys, head.Count);
        Array.Copy(head.Weights, copy.Weights, head.Count);
        copy.Count = head.Count;
        copy.CountAbove = 0;
        copy.WeightAbove = 0;
        return copy;
    }

    private float Tempered(float x) => _t == 1f ? x : x / _t;

    private static int Digit(float e) => Math.Min(Digits - 1, BitConverter.SingleToInt32Bits(e) >> DigitShift);

    private static float LowE(int digit) => BitConverter.Int32BitsToSingle(digit << DigitShift);

    private static float HighE(int digit) => BitConverter.Int32BitsToSingle(((digit + 1) << DigitShift) - 1);

    /// <summary>
    /// A bracket of digits [low, high] that holds the target unless the sample misleads: scanning down from the top,
    /// the running total is estimated from the tokens sampled above (or, when that is less uncertain, as the kept
    /// total less the tokens sampled below); high is the first digit where the target may be reached, low the first
    /// where it is reached by <see cref="Deviations"/> standard deviations. Unsampled tokens add one stride of the
    /// largest weight they could have to the uncertainty.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Estimate(Target target, ulong threshold, Bound limit, ulong total, Gathered g)
    {
        EnsureSample();
        bool byCount = target == Target.Count;
        double need = target == Target.WeightAbove ? threshold + 1.0 : threshold;
        double stride = SampleStride;
        double kept = limit.Active ? (byCount ? limit.Count : limit.Weight) : byCount ? _vocab : total;
        int bottom = limit.Active ? Digit(limit.E) : 0;
        int top = Math.Min(Digits - 1, _sampleHigh), first = Math.Max(bottom, _sampleLow);
        double sumBelow = 0, squaresBelow = 0;
        for (int d = first; d <= top; d++)
        {
            sumBelow += byCount ? _sampleCount[d] : _sampleWeight[d];
            squaresBelow += byCount ? _sampleCount[d] : _sampleSquares[d];
        }
        double heaviest = byCount ? 1 : _scale;
        double sumAbove = 0, squaresAbove = 0;
        int high = -1, low = bottom;
        for (int d = top; d >= first; d--)
        {
            if (_sampleCount[d] == 0) continue;
            double x = byCount ? _sampleCount[d] : _sampleWeight[d], x2 = byCount ? _sampleCount[d] : _sampleSquares[d];
            sumAbove += x;
            squaresAbove += x2;
            sumBelow -= x;
            squaresBelow -= x2;
            double topError = stride * (Math.Sqrt(Math.Max(0, squaresAbove)) + heaviest);
            double lighter = byCount ? 1 : LowE(d) * (double)_scale;
            double bottomError = stride * (Math.Sqrt(Math.Max(0, squaresBelow)) + lighter);
            double estimate = topError <= bottomError ? stride * sumAbove : kept - stride * sumBelow;
            double error = Deviations * Math.Min(topError, bottomError);
            if (high < 0 && estimate + error >= need) high = d == top ? Digits - 1 : d;
            if (estimate - error >= need)
            {
                low = d;
                break;
            }
        }
        if (high < 0) high = Digits - 1;
        g.Low = Math.Min(low, high);
        g.High = high;
    }

    /// <summary>
    /// One pass over e for one or two brackets: for each, the count and weight of the kept tokens with e above it
    /// and the ids of those in it (keyed and weighed afterwards, so the loop makes no call and keeps its vectors in
    /// registers), then their keys and weights, limited to <paramref name="limit"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Pass(Gathered a, Gathered? b, Bound limit)
    {
        float aLow = LowE(a.Low), aHigh = HighE(a.High);
        float bLow = b is null ? 2f : LowE(b.Low), bHigh = b is null ? 2f : HighE(b.High);
        if (limit.Active)
        {
            // Nothing below the limit's e is kept; everything above a bracket must be.
            aLow = Math.Max(aLow, limit.E);
            aHigh = Math.Max(aHigh, aLow);
            bLow = Math.Max(bLow, limit.E);
            bHigh = Math.Max(bHigh, bLow);
        }
        (a.ELow, a.EHigh) = (aLow, aHigh);
        if (b is not null) (b.ELow, b.EHigh) = (bLow, bHigh);
        ulong aCount = 0, bCount = 0;
        int aInside = 0, bInside = 0, vocab = _vocab, j = 0;
        float scale = _scale;
        var ah = Vector256.Create(aHigh);
        var al = Vector256.Create(aLow);
        var bh = Vector256.Create(bHigh);
        var bl = Vector256.Create(bLow);
        var aw0 = Vector256<ulong>.Zero;
        var aw1 = Vector256<ulong>.Zero;
        var bw0 = Vector256<ulong>.Zero;
        var bw1 = Vector256<ulong>.Zero;
        // A block whose largest e is below both brackets adds nothing to either.
        const int block = CpuSampling.WalkBlock;
        float lowest = Math.Min(aLow, bLow);
        fixed (float* blockMax = BlockMaxExps)
        fixed (float* e = Exps)
        fixed (int* aIds = a.Ids)
        fixed (int* bIds = (b ?? a).Ids)
        {
            // Every lane's weight once; each bracket adds those of its lanes above it through a mask, without a branch.
            if (Avx512F.IsSupported && Avx512DQ.IsSupported)
            {
                var ah16 = Vector512.Create(aHigh);
                var al16 = Vector512.Create(aLow);
                var bh16 = Vector512.Create(bHigh);
                var bl16 = Vector512.Create(bLow);
                var aw = Vector512<ulong>.Zero;
                var bw = Vector512<ulong>.Zero;
                var lanes = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                for (; j <= vocab - 16; j += 16)
                {
                    if ((j & (block - 1)) == 0 && blockMax[j / block] < lowest)
                    {
                        j += block - 16;
                        continue;
                    }
                    var v = Vector512.Load(e + j);
                    CpuSampling.Weights(v, scale, out var w0, out var w1);
                    var ids = Vector512.Create(j) + lanes;
                    var above = Vector512.GreaterThan(v, ah16);
                    aCount += (ulong)BitOperations.PopCount(above.ExtractMostSignificantBits());
                    aw += (w0 & Vector512.WidenLower(above.AsInt32()).AsUInt64()) + (w1 & Vector512.WidenUpper(above.AsInt32()).AsUInt64());
                    // The ids of the lanes in the bracket, packed without a branch (a bracket's lanes are too frequent and
                    // too irregular for a predicted loop).
                    var inside = Vector512.AndNot(Vector512.GreaterThanOrEqual(v, al16), above).AsInt32();
                    Avx512F.Compress(Vector512<int>.Zero, inside, ids).Store(aIds + aInside);
                    aInside += BitOperations.PopCount(inside.ExtractMostSignificantBits());
                    if (b is null) continue;
                    above = Vector512.GreaterThan(v, bh16);
                    bCount += (ulong)BitOperations.PopCount(above.ExtractMostSignificantBits());
                    bw += (w0 & Vector512.WidenLower(above.AsInt32()).AsUInt64()) + (w1 & Vector512.WidenUpper(above.AsInt32()).AsUInt64());
                    inside = Vector512.AndNot(Vector512.GreaterThanOrEqual(v, bl16), above).AsInt32();
                    Avx512F.Compress(Vector512<int>.Zero, inside, ids).Store(bIds + bInside);
                    bInside += BitOperations.PopCount(inside.ExtractMostSignificantBits());
                }
                aw0 = aw.GetLower() + aw.GetUpper();
                bw0 = bw.GetLower() + bw.GetUpper();
            }
            var zero = Vector256<ulong>.Zero;
            for (; j <= vocab - 8; j += 8)
            {
                if ((j & (block - 1)) == 0 && blockMax[j / block] < lowest)
                {
                    j += block - 8;
                    continue;
                }
                var v = Vector256.Load(e + j);
                var w0 = zero;
                var w1 = zero;
                CpuSampling.AddWeights(v, scale, ref w0, ref w1);
                var above = Vector256.GreaterThan(v, ah);
                aCount += (uint)BitOperations.PopCount(above.ExtractMostSignificantBits());
                aw0 += w0 & Vector256.WidenLower(above.AsInt32()).AsUInt64();
                aw1 += w1 & Vector256.WidenUpper(above.AsInt32()).AsUInt64();
                uint inside = Vector256.AndNot(Vector256.GreaterThanOrEqual(v, al), above).ExtractMostSignificantBits();
                while (inside != 0)
                {
                    aIds[aInside++] = j + BitOperations.TrailingZeroCount(inside);
                    inside &= inside - 1;
                }
                if (b is null) continue;
                above = Vector256.GreaterThan(v, bh);
                bCount += (uint)BitOperations.PopCount(above.ExtractMostSignificantBits());
                bw0 += w0 & Vector256.WidenLower(above.AsInt32()).AsUInt64();
                bw1 += w1 & Vector256.WidenUpper(above.AsInt32()).AsUInt64();
                inside = Vector256.AndNot(Vector256.GreaterThanOrEqual(v, bl), above).ExtractMostSignificantBits();
                while (inside != 0)
                {
                    bIds[bInside++] = j + BitOperations.TrailingZeroCount(inside);
                    inside &= inside - 1;
                }
            }
            ulong aTail = 0, bTail = 0;
            if (j < vocab && blockMax[j / block] < lowest) j = vocab;
            for (; j < vocab; j++)
            {
                float v = e[j];
                if (v > aHigh)
                {
                    aCount++;
                    aTail += SamplingRules.Weight(v, scale);
                }
                else if (v >= aLow) aIds[aInside++] = j;
                if (b is null) continue;
                if (v > bHigh)
                {
                    bCount++;
                    bTail += SamplingRules.Weight(v, scale);
                }
                else if (v >= bLow) bIds[bInside++] = j;
            }
            (a.CountAbove, a.WeightAbove) = (aCount, Vector256.Sum(aw0 + aw1) + aTail);
            Key(a, aInside, e, limit);
            if (b is not null)
            {
                (b.CountAbove, b.WeightAbove) = (bCount, Vector256.Sum(bw0 + bw1) + bTail);
                Key(b, bInside, e, limit);
            }
        }
    }

    /// <summary>The keys and weights of the gathered ids inside the limit (ids stay in order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Key(Gathered g, int inside, float* e, Bound limit)
    {
        int n = 0;
        for (int i = 0; i < inside; i++)
        {
            int id = g.Ids[i];
            ulong key = ((ulong)SamplingRules.ValueKey(Tempered(_x[id])) << 32) | (uint)id;
            if (limit.Active && key > limit.Key) continue;
            g.Keys[n] = key;
            g.Weights[n] = SamplingRules.Weight(e[id], _scale);
            n++;
        }
        g.Count = n;
    }

    /// <summary>Whether the target lies in the bracket: the kept tokens above it do not reach it, with the bracket's they do.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Hit(Target target, ulong threshold, Gathered g, Bound limit)
    {
        ulong need = target == Target.WeightAbove ? threshold + 1 : threshold;
        bool byCount = target == Target.Count;
        ulong above = byCount ? g.CountAbove : g.WeightAbove;
        if (above >= need) return false;
        ulong inside = 0;
        for (int i = 0; i < g.Count; i++)
        {
            if (limit.Active && g.Keys[i] > limit.Key) continue;
            inside += byCount ? 1 : g.Weights[i];
        }
        return above + inside >= need;
    }

    /// <summary>Resolves in the gathered bracket when it holds the target; otherwise moves and widens it and passes again.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Bound Refine(Target target, ulong threshold, Bound limit, Gathered g)
    {
        ulong need = target == Target.WeightAbove ? threshold + 1 : threshold;
        for (int attempt = 0; attempt < 8; attempt++)
        {
            bool byCount = target == Target.Count;
            ulong above = byCount ? g.CountAbove : g.WeightAbove;
            int width = g.High - g.Low + 1;
            if (above >= need)
            {
                if (g.High >= Digits - 1) break;
                g.Low = g.High + 1;
                g.High = attempt >= 2 ? Digits - 1 : Math.Min(Digits - 1, g.High + 4 * width);
            }
            else if (!Hit(target, threshold, g, limit))
            {
                if (g.Low <= 0) break;
                g.High = g.Low - 1;
                g.Low = attempt >= 2 ? 0 : Math.Max(0, g.Low - 4 * width);
            }
            else
            {
                return Resolve(target, threshold, limit, g);
            }
            Pass(g, null, limit);
        }
        // Only logits outside the rules (NaN) get here: any valid token.
        int first = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(_x, _vocab));
        return new Bound(((ulong)SamplingRules.ValueKey(Tempered(_x[first])) << 32) | (uint)first, 1, Math.Max(1, _total), Exps[first]);
    }

    /// <summary>
    /// The target among the gathered tokens, from the count and weight above them: 8-bit digits of the value key, each
    /// level keeping (stably, so ids stay in order) the bucket where the running value reaches it; then a walk of
    /// what is left, which is one key's tokens in id order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Bound Resolve(Target target, ulong threshold, Bound limit, Gathered g)
    {
        ulong need = target == Target.WeightAbove ? threshold + 1 : threshold;
        bool byCount = target == Target.Count;
        ulong count = g.CountAbove, weight = g.WeightAbove;
        var keys = g.Keys;
        var weights = g.Weights;
        int n = 0;
        uint differ = 0;
        for (int i = 0; i < g.Count; i++)
        {
            if (limit.Active && keys[i] > limit.Key) continue;
            keys[n] = keys[i];
            weights[n] = weights[i];
            differ |= (uint)((keys[i] ^ keys[0]) >> 32);
            n++;
        }
        // A bracket's keys share their high bytes: start at the highest byte in which any two differ.
        int top = differ == 0 ? 24 : 32 + (31 - BitOperations.LeadingZeroCount(differ)) / 8 * 8;
        for (int shift = top; shift >= 32 && n > 1; shift -= 8)
        {
            Array.Clear(_radixCount);
            Array.Clear(_radixWeight);
            for (int i = 0; i < n; i++)
            {
                int d = (int)(keys[i] >> shift) & 255;
                _radixCount[d]++;
                _radixWeight[d] += weights[i];
            }
            int digit = 255;
            for (int d = 0; d < 256; d++)
            {
                ulong c = (ulong)_radixCount[d], w = _radixWeight[d];
                if ((byCount ? count + c : weight + w) >= need)
                {
                    digit = d;
                    break;
                }
                count += c;
                weight += w;
            }
            if (_radixCount[digit] == n) continue;
            int m = 0;
            for (int i = 0; i < n; i++)
            {
                if ((int)(keys[i] >> shift & 255) != digit) continue;
                keys[m] = keys[i];
                weights[m] = weights[i];
                m++;
            }
            n = m;
        }
        for (int i = 0; i < n; i++)
        {
            count++;
            weight += weights[i];
            if ((byCount ? count : weight) >= need || i == n - 1)
                return new Bound(keys[i], count, weight, Exps[(int)(uint)keys[i]]);
        }
        int first = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(_x, _vocab));
        return new Bound(((ulong)SamplingRules.ValueKey(Tempered(_x[first])) << 32) | (uint)first, 1, Math.Max(1, _total), Exps[first]);
    }
}
