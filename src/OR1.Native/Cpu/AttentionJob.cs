namespace OR1.Native.Cpu;

internal static unsafe partial class CpuAttention
{
    /// <summary>
    /// The arguments of the call in flight plus its work-item table. Fields are written by the calling
    /// thread before it forks; the pool's start signal publishes them to the workers.
    /// </summary>
    private sealed partial class Job
    {
        public float* Q, K, V, O, Lse, DO, DQ, DK, DV;
        /// <summary>Transposed K and V, [Hkv, D, Npad]; Di = dO·O per row and head, [N, Hq].</summary>
        public float* Kt, Vt, Di;
        public float* KCache, VCache;
        public int* PageTable, Lengths;
        public int PagesPerRow, PageSize;
        public int[] Offsets = [];
        public int Hq, Hkv, D, Dp, G, QStride, KvStride, N;
        /// <summary>Row length of the transposed packs: N plus room for a tile's last vector to overhang.</summary>
        public int Npad;
        public float Scale;
        /// <summary>Scale · log2 e: multiplies queries so the score GEMM yields base-2 scores.</summary>
        public float Scale2;
        public int PackChunks;
        public int TileRows;
        public int KeyRows;
        public int[] Items = new int[96];
        public int ItemCount;

        public readonly Action<int> PackForward, PackBackward, ForwardTile, DqTile, DkvBlock, DecodeItem, DecodeMerge;

        public Job()
        {
            PackForward = RunPackForward;
            PackBackward = RunPackBackward;
            ForwardTile = RunForwardTile;
            DqTile = RunDqTile;
            DkvBlock = RunDkvBlock;
            DecodeItem = RunDecodeItem;
            DecodeMerge = RunDecodeMerge;
        }

        public int PackCount => Hkv * PackChunks;
        public long KvPackFloats => (long)Hkv * D * Npad;

        public void InitHeads(int numHeads, int numKvHeads, int headDim, float scale)
        {
            Hq = numHeads;
            Hkv = numKvHeads;
            D = headDim;
            Dp = RoundUp8(headDim);
            G = numHeads / numKvHeads;
            QStride = numHeads * headDim;
            KvStride = numKvHeads * headDim;
            Scale = scale;
            Scale2 = scale * Log2E;
        }

        public void Init(int[] offsets, int numHeads, int numKvHeads, int headDim, float scale)
        {
            InitHeads(numHeads, numKvHeads, headDim, scale);
            Offsets = offsets;
            N = offsets[^1];
            Npad = RoundUp8(N) + 8;
            PackChunks = (N + PackRows - 1) / PackRows;
        }

        /// <summary>Drops the references of the finished call so the job does not keep them alive.</summary>
        public void Release()
        {
            Offsets = [];
            Q = K = V = O = Lse = DO = DQ = DK = DV = null;
            Kt = Vt = Di = KCache = VCache = DecodePartials = null;
            PageTable = Lengths = null;
        }

        /// <summary>Multiply-adds of the causal score product, to decide whether forking pays.</summary>
        public long CausalWork()
        {
            long work = 0;
            for (int s = 0; s + 1 < Offsets.Length; s++)
            {
                long len = Offsets[s + 1] - Offsets[s];
                work += len * (len + 1) / 2;
            }
            return work * Hq * D;
        }

        /// <summary>Rows [First, First + Count) of the sequence of length Length whose first row is Start, kv head Head.</summary>
        private readonly record struct Block(int Start, int Length, int Head, int First, int Count);

        /// <summary>The block a work item of <see cref="BuildItems"/> stands for, blocks being rowsPerItem rows.</summary>
        private Block BlockAt(int item, int rowsPerItem)
        {
            int seq = Items[3 * item], h = Items[3 * item + 1], block = Items[3 * item + 2];
            int s = Offsets[seq], len = Offsets[seq + 1] - s;
            int first = block * rowsPerItem;
            return new Block(s, len, h, first, Math.Min(len, first + rowsPerItem) - first);
        }

        private int CountItems(int rowsPerItem)
        {
            long count = 0;
            for (int s = 0; s + 1 < Offsets.Length; s++)
                count += (Offsets[s + 1] - Offsets[s] + rowsPerItem - 1) / rowsPerItem;
            return (int)Math.Min(int.MaxValue, count * Hkv);
        }

        /// <summary>Query-row tiles for the forward and both backward passes; items for the forward and pass 1.</summary>
        public void PlanQueryTiles()
        {
            int rows = Math.Max(1, TileVectors / G);
            // Short sequences or few kv heads leave too few tiles to balance: trade GEMM size for items.
            int wanted = 4 * CpuParallel.ThreadCount;
            while (rows > 1 && rows / 2 * G >= MinTileVectors && CountItems(rows) < wanted) rows /= 2;
            TileRows = rows;
            BuildItems(rows, costFromEnd: false);
        }

        /// <summary>Key-row blocks for pass 2.</summary>
        public void PlanKeyBlocks()
        {
            int rows = KeyBlock;
            int wanted = 4 * CpuParallel.ThreadCount;
            while (rows > 16 && CountItems(rows) < wanted) rows /= 2;
            KeyRows = rows;
            BuildItems(rows, costFromEnd: true);
        }

        /// <summary>
        /// Lists (sequence, kv head, block) items, most expensive first, so the pool's dynamic claiming
        /// behaves like longest-processing-time scheduling. Under a causal mask a query block's cost grows
        /// with its index and a key block's cost with its distance from the sequence end; blocks of the
        /// same rank cost the same in every sequence.
        /// </summary>
        private void BuildItems(int rowsPerItem, bool costFromEnd)
        {
            int count = CountItems(rowsPerItem), maxBlocks = 0;
            for (int s = 0; s + 1 < Offsets.Length; s++)
                maxBlocks = Math.Max(maxBlocks, (Offsets[s + 1] - Offsets[s] + rowsPerItem - 1) / rowsPerItem);
            if (Items.Length < 3L * count) Items = new int[checked(3 * count)];
            int w = 0;
            for (int rank = maxBlocks - 1; rank >= 0; rank--)
            {
                for (int s = 0; s + 1 < Offsets.Length; s++)
                {
                    int blocks = (Offsets[s + 1] - Offsets[s] + rowsPerItem - 1) / rowsPerItem;
                    if (blocks <= rank) continue;
                    int block = costFromEnd ? blocks - 1 - rank : rank;
                    for (int h = 0; h < Hkv; h++)
                    {
                        Items[w++] = s;
                        Items[w++] = h;
                        Items[w++] = block;
                    }
                }
            }
            ItemCount = count;
        }
    }
}
