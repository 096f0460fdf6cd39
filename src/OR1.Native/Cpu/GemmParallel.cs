namespace OR1.Native.Cpu;

internal static partial class CpuGemm
{
    /// <summary>
    /// The threaded driver: C is cut into one band per thread (whole slivers), and each band runs the
    /// serial blocked algorithm with its thread's own packing buffers. The pool has no barrier and a
    /// worker that has gone to sleep takes 35-80 us to wake on this VM, so one fork per call beats the
    /// GotoBLAS scheme of packing a shared B panel and forking again to compute on it (measured 1.4x
    /// slower at 256^3 and 255x4095x127, equal at 1024^3). Each C element is summed by one thread in a fixed
    /// k order, so results are bit-identical run to run. The price is that every band packs the operand
    /// the bands share; banding the longer side of C duplicates the smaller one (~1.5% of the time at 1024^3).
    /// One instance per calling thread, with its delegate created once, so a forked call allocates nothing.
    /// </summary>
    private sealed class ParallelJob
    {
        [ThreadStatic] private static ParallelJob? t_instance;

        private readonly Action<int> _runPart;
        private BlockedProduct _product;
        private bool _byRows;
        private int _slivers;
        private int _parts;

        private ParallelJob() => _runPart = RunPart;

        public static void Run(in BlockedProduct product, int threads)
        {
            var blocking = product.Blocking;
            int mSlivers = (product.M + blocking.MR - 1) / blocking.MR;
            int nSlivers = (product.N + blocking.NR - 1) / blocking.NR;
            double rowBalance = Balance(mSlivers, threads), colBalance = Balance(nSlivers, threads);
            bool byRows = rowBalance > colBalance || (rowBalance == colBalance && product.M >= product.N);
            int slivers = byRows ? mSlivers : nSlivers;
            int parts = Math.Min(threads, slivers);
            if (parts <= 1)
            {
                product.RunSerial();
                return;
            }
            var self = t_instance ??= new ParallelJob();
            self._product = product;
            self._byRows = byRows;
            self._slivers = slivers;
            self._parts = parts;
            CpuParallel.ForEach(parts, self._runPart);
        }

        /// <summary>Band boundaries depend only on the sliver count and the part count.</summary>
        private void RunPart(int part)
        {
            int s0 = (int)((long)_slivers * part / _parts), s1 = (int)((long)_slivers * (part + 1) / _parts);
            var blocking = _product.Blocking;
            if (_byRows) _product.RunSerial(s0 * blocking.MR, Math.Min(s1 * blocking.MR, _product.M), 0, _product.N);
            else _product.RunSerial(0, _product.M, s0 * blocking.NR, Math.Min(s1 * blocking.NR, _product.N));
        }

        /// <summary>Average thread's share of the busiest thread's slivers (1 = even split).</summary>
        private static double Balance(int slivers, int threads)
        {
            int parts = Math.Min(threads, slivers);
            int most = (slivers + parts - 1) / parts;
            return (double)slivers / ((double)most * threads);
        }
    }
}
