using System.Runtime.InteropServices;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>
    /// A B operand packed once, whole, for many products with the same data (a model's weights during generation): the
    /// layout <see cref="PackB"/> gives one block, extended to all of K and N, [sliver][K][NR]. A product reads block
    /// (pc, jc) of it as the slivers from jc / NR on, kc rows from pc, the next sliver K x NR floats on. The micro-kernel,
    /// its tiles and the k order are those of an unpacked call, so the bits are too; what is saved is the packing of B
    /// in every call, which dominates a product with few rows (a decode step's: the 8 MB LM head of the bench model cost
    /// about 1.1 ms per call to pack, against 0.3 ms for the product at 16 rows).
    /// </summary>
    internal sealed class PackedOperand : IDisposable
    {
        private PackedOperand(float* source, bool transB, int n, int k, int ldb, Blocking blocking, float* data)
        {
            Source = source;
            TransB = transB;
            N = n;
            K = k;
            Ldb = ldb;
            Blocking = blocking;
            Data = data;
        }

        public float* Source { get; }
        public bool TransB { get; }
        public int N { get; }
        public int K { get; }
        public int Ldb { get; }
        private Blocking Blocking { get; }
        public float* Data { get; private set; }

        /// <summary>Bytes a packed copy of an n x k operand takes.</summary>
        public static long BytesFor(int n, int k) => (long)((n + s_blocking.NR - 1) / s_blocking.NR) * s_blocking.NR * k * sizeof(float);

        /// <summary>opB (k x n, as in <see cref="Multiply"/>) packed with the process's current micro-kernel.</summary>
        public static PackedOperand Pack(bool transB, int n, int k, float* b, int ldb)
        {
            var blocking = s_blocking;
            long floats = BytesFor(n, k) / sizeof(float);
            var data = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
            PackB(transB, b, ldb, 0, k, 0, n, blocking.NR, data);
            return new PackedOperand(b, transB, n, k, ldb, blocking, data);
        }

        /// <summary>Whether a call's B is this operand: the same memory read the same way, packed for the kernel in use.</summary>
        public bool Matches(bool transB, int n, int k, float* b, int ldb) =>
            Data != null && b == Source && transB == TransB && n == N && k == K && ldb == Ldb && ReferenceEquals(Blocking, s_blocking);

        public void Dispose()
        {
            if (Data == null) return;
            NativeMemory.AlignedFree(Data);
            Data = null;
        }
    }
}
