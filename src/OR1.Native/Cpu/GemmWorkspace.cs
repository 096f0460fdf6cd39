using System.Runtime.InteropServices;

namespace OR1.Native.Cpu;

internal static unsafe partial class CpuGemm
{
    /// <summary>Per-thread packing buffers, allocated once and kept: a steady training loop allocates
    /// nothing. The finalizer frees them when a pool thread (and so its thread-static) goes away.</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;

        private Workspace(Blocking blocking)
        {
            Blocking = blocking;
            int mcPad = (blocking.MC + blocking.MR - 1) / blocking.MR * blocking.MR;
            int ncPad = (blocking.NC + blocking.NR - 1) / blocking.NR * blocking.NR;
            A = Alloc((nint)mcPad * blocking.KC);
            B = Alloc((nint)ncPad * blocking.KC);
            Tile = Alloc((nint)blocking.MR * blocking.NR);
        }

        public Blocking Blocking { get; }
        public float* A { get; }
        public float* B { get; }
        public float* Tile { get; }

        public static Workspace For(Blocking blocking)
        {
            var ws = t_current;
            if (ws is null || ws.Blocking != blocking)
            {
                ws = new Workspace(blocking);
                t_current = ws;
            }
            return ws;
        }

        // 64-byte alignment: a packed row of B is whole cache lines, so zmm loads never split lines.
        private static float* Alloc(nint floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);

        ~Workspace()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
            NativeMemory.AlignedFree(Tile);
        }
    }
}
