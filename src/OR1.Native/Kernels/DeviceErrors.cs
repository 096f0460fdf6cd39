namespace OR1.Native.Kernels;

/// <summary>What a device-side index check guards, which fixes the words of its message.</summary>
internal enum IndexCheck
{
    /// <summary>GatherRows/ScatterRows 'rowIndices' in [0, bound).</summary>
    RowIndex,
    /// <summary>WriteKeyCache 'cacheRows' in [0, pages x pageSize = bound).</summary>
    CacheRow,
    /// <summary>Embedding 'tokenIds' in [0, vocab = bound).</summary>
    TokenId,
    /// <summary>RoPE 'positions' ≥ 0.</summary>
    Position,
    /// <summary>AttentionDecode 'pageTable' entries (flat index) in [0, pages = bound).</summary>
    PageEntry,
    /// <summary>AttentionDecode 'lengths' in [1, capacity = bound].</summary>
    Length,
    /// <summary>Log-prob 'targets' in [0, vocab = bound).</summary>
    Target,
    /// <summary>AdvanceDecode: a running row's next position has a page in its table row (bound = the row's slots; the value is the position).</summary>
    NextPage,
}

/// <summary>
/// The device's error record and the host's book of the checks that write it (see "device-side argument checks" in
/// kernels/common.cuh). Index values that only the device holds are checked by the kernels that use them, so no op
/// waits for the host: each checking launch gets a check id here, in issue order, and a bad value is written to
/// the record. Before every blocking read the record's first word is queued for an asynchronous copy into pinned
/// memory, and after the read it is looked at: a failure becomes the op's <see cref="ArgumentException"/> (argument,
/// position, value and the valid range), raised by the call that synchronised. Debug sync drains after every op,
/// so the exception comes from the op itself. One thread at a time, as the backend's stream.
/// </summary>
internal sealed unsafe class DeviceErrors : IDisposable
{
    /// <summary>OR1_CHECK_RING in kernels/common.cuh: checks in flight between two reads.</summary>
    public const int Ring = 8192;

    private const ulong Clean = ulong.MaxValue;
    private const uint IdLimit = 1u << 30;

    private readonly IKernelRuntime _device;
    private readonly (string Op, IndexCheck Kind, int Bound)[] _checks = new (string, IndexCheck, int)[Ring];
    private readonly ulong[] _cleanRecord;
    private nint _record;
    private nint _snapshot;
    private uint _next;          // the id the next check gets
    private uint _verified;      // checks below this id are known clean
    private uint _snapshotEnd;   // the snapshot queued covers checks below this id (0: none queued)
    // Checks issued while a graph is captured: ids from IdLimit up, kept for the graphs' lifetime (a replay reports
    // under the ids its capture had); _graphUnverified says a replay ran since the record was last read clean.
    private readonly List<(string Op, IndexCheck Kind, int Bound)> _graphChecks = [];
    private bool _graphUnverified;

    public DeviceErrors(IKernelRuntime device)
    {
        _device = device;
        _cleanRecord = new ulong[Ring + 1];
        Array.Fill(_cleanRecord, Clean);
    }

    /// <summary>The device record that kernels report to (allocated on the first check, then reused).</summary>
    public nint Record
    {
        get
        {
            if (_record == 0)
            {
                _record = _device.Allocate((Ring + 1) * sizeof(ulong));
                _snapshot = _device.AllocatePinnedHost(sizeof(ulong));
                *(ulong*)_snapshot = Clean;
                Reset();
            }
            return _record;
        }
    }

    /// <summary>Numbers a check of <paramref name="kind"/> made by <paramref name="op"/>; the kernel gets the id.</summary>
    public uint Register(string op, IndexCheck kind, int bound)
    {
        if (_device.Capturing) return GraphCheck((op, kind, bound));
        uint id = Reserve(1);
        _checks[id % Ring] = (op, kind, bound);
        return id;
    }

    /// <summary>Two consecutive ids for a kernel that checks two arguments (it reports the second under id + 1).</summary>
    public uint RegisterPair(string op, IndexCheck first, int firstBound, IndexCheck second, int secondBound)
    {
        if (_device.Capturing)
        {
            uint pair = GraphCheck((op, first, firstBound));
            GraphCheck((op, second, secondBound));
            return pair;
        }
        uint id = Reserve(2);
        _checks[id % Ring] = (op, first, firstBound);
        _checks[(id + 1) % Ring] = (op, second, secondBound);
        return id;
    }

    /// <summary>
    /// An id of the graph band for a check recorded into a graph (the record must exist before the capture: a capture
    /// cannot allocate). Its position word shares a ring slot with ordinary checks; only the op, argument and bound are
    /// sure to be the failing check's when both fail between two reads.
    /// </summary>
    private uint GraphCheck((string Op, IndexCheck Kind, int Bound) check)
    {
        if (_record == 0) throw new InvalidOperationException("the device error record must exist before a graph capture: run the captured work once first");
        _graphChecks.Add(check);
        return IdLimit + (uint)(_graphChecks.Count - 1);
    }

    /// <summary>A graph was replayed: its checks may have reported, so the next read looks at the record.</summary>
    public void NoteReplay() => _graphUnverified = true;

    private bool NothingToVerify => _next == _verified && !_graphUnverified;

    private uint Reserve(uint count)
    {
        _ = Record;
        // A check id's slot must not be reused before the record was read past it; and ids restart before they wrap.
        if (_next + count - _verified > Ring || _next + count > IdLimit) Drain();
        if (_next + count > IdLimit) _next = _verified = 0;
        uint id = _next;
        _next += count;
        return id;
    }

    /// <summary>Before a blocking read: queue the copy of the record's first word, ordered after every check issued.</summary>
    public void BeforeWait()
    {
        if (_record == 0 || NothingToVerify || _snapshotEnd != 0) return;
        _device.CopyDeviceToHostAsync(_record, (void*)_snapshot, sizeof(ulong));
        _snapshotEnd = Math.Max(1, _next); // never 0 ("none queued"), also when only a replay's checks are pending
    }

    /// <summary>After the blocking read returned (so the queued copy has landed): raise what the record holds.</summary>
    public void AfterWait()
    {
        if (_snapshotEnd == 0) return;
        uint end = _snapshotEnd;
        _snapshotEnd = 0;
        ulong first = *(ulong*)_snapshot;
        if (first == Clean)
        {
            _verified = Math.Max(_verified, Math.Min(end, _next));
            _graphUnverified = false;
        }
        else Raise(first);
    }

    /// <summary>Reads the record now (one synchronisation) and raises what it holds; for debug sync and a full ring.</summary>
    public void Drain()
    {
        if (_record == 0 || NothingToVerify) return;
        _snapshotEnd = 0;
        ulong first;
        _device.CopyDeviceToHost(_record, &first, sizeof(ulong));
        if (first == Clean)
        {
            _verified = _next;
            _graphUnverified = false;
        }
        else Raise(first);
    }

    private void Raise(ulong firstCheck)
    {
        uint id = (uint)firstCheck;
        ulong detail;
        _device.CopyDeviceToHost(_record + (nint)((1 + id % Ring) * sizeof(ulong)), &detail, sizeof(ulong));
        Reset();
        _verified = _next; // later reports are most likely consequences of this one
        _graphUnverified = false;
        var (op, kind, bound) = id >= IdLimit ? _graphChecks[(int)(id - IdLimit)] : _checks[id % Ring];
        throw new ArgumentException(Message(op, kind, bound, (int)(detail >> 32), (int)(uint)detail), ArgumentName(kind));
    }

    private void Reset()
    {
        fixed (ulong* clean = _cleanRecord) _device.CopyHostToDevice(clean, _record, _cleanRecord.Length * sizeof(ulong));
    }

    private static string ArgumentName(IndexCheck kind) => kind switch
    {
        IndexCheck.RowIndex => "rowIndices",
        IndexCheck.CacheRow => "cacheRows",
        IndexCheck.TokenId => "tokenIds",
        IndexCheck.Position => "positions",
        IndexCheck.PageEntry => "pageTable",
        IndexCheck.Length => "lengths",
        IndexCheck.NextPage => "next",
        _ => "targets",
    };

    /// <summary>The contract's message for a bad value found by the device (the same words as the host checks use).</summary>
    internal static string Message(string op, IndexCheck kind, int bound, int position, int value) => kind switch
    {
        IndexCheck.RowIndex => $"{op}: argument 'rowIndices' has {value} at position {position}, outside [0, {bound})",
        IndexCheck.CacheRow => $"{op}: argument 'cacheRows' has {value} at position {position}, outside [0, {bound})",
        IndexCheck.TokenId => $"{op}: argument 'tokenIds' has id {value} at position {position}, outside the table's vocabulary [0, {bound})",
        IndexCheck.Position => $"{op}: argument 'positions' has {value} at row {position}; positions must be non-negative",
        IndexCheck.PageEntry => $"{op}: pageTable[{position}] = {value} is outside [0, {bound}), the cache's pages (the flat index: row x pages per row + page)",
        IndexCheck.Length => $"{op}: lengths[{position}] = {value} is outside [1, {bound}]",
        IndexCheck.NextPage => OR1.Native.Cpu.CpuDecodeAdvance.MissingPageMessage(position, value, bound),
        _ => $"{op}: argument 'targets' has token {value} at row {position}, outside the vocabulary [0, {bound})",
    } + " (found by the kernel, reported at the next synchronisation; --debug-sync reports it at the op)";

    public void Dispose()
    {
        if (_record != 0) _device.Free(_record);
        if (_snapshot != 0) _device.FreePinnedHost(_snapshot);
        _record = _snapshot = 0;
    }
}
