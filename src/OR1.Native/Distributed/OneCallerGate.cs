namespace OR1.Native.Distributed;

/// <summary>
/// Admits one thread at a time into a library that takes calls from any thread but never from two at once
/// (MPI_THREAD_SERIALIZED): a second caller meanwhile is refused with a <see cref="CollectiveException"/> naming both,
/// instead of being passed on to a library whose behaviour would then be undefined. Refusing, not waiting: the ranks
/// must issue their collectives in the same order, which two threads racing for a lock would not keep.
/// </summary>
internal sealed class OneCallerGate(Func<int> rank)
{
    // 1 while a caller is inside.
    private int _inside;
    private string _current = "";

    /// <summary>Enters for the duration of the returned scope (dispose it to leave).</summary>
    /// <exception cref="CollectiveException">Another thread is inside.</exception>
    public Scope Enter(string what)
    {
        if (Interlocked.Exchange(ref _inside, 1) != 0)
            throw new CollectiveException($"rank {rank()}: {what} was called while another thread is inside a collective ({Volatile.Read(ref _current)}): " +
                                          "MPI takes one thread's calls at a time; finish the gradients' reduction before the next collective");
        Volatile.Write(ref _current, what);
        return new Scope(this);
    }

    /// <summary>The time one caller spends inside.</summary>
    public readonly ref struct Scope(OneCallerGate gate)
    {
        public void Dispose() => Volatile.Write(ref gate._inside, 0);
    }
}
