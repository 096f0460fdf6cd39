namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// Drains one output pipe of a sandboxed program on its own thread, keeping at most a cap of bytes; past
/// the cap it calls the overflow action (which kills the program) and stops reading.
/// </summary>
internal sealed class CappedReader
{
    private readonly Stream _stream;
    private readonly int _cap;
    private readonly Action _overflow;
    private readonly Thread _thread;
    private readonly MemoryStream _kept = new();

    public CappedReader(Stream stream, int cap, Action overflow, string name)
    {
        _stream = stream;
        _cap = cap;
        _overflow = overflow;
        _thread = new Thread(Drain) { IsBackground = true, Name = $"sandbox {name}" };
        _thread.Start();
    }

    /// <summary>Whether the program wrote more than the cap.</summary>
    public bool Overflowed { get; private set; }

    /// <summary>Waits for the end of the stream (the program and everything holding the pipe are gone).</summary>
    public bool Join(TimeSpan timeout) => _thread.Join(timeout);

    /// <summary>What was kept, decoded as UTF-8 (invalid bytes become U+FFFD).</summary>
    public string Text()
    {
        lock (_kept) return System.Text.Encoding.UTF8.GetString(_kept.GetBuffer(), 0, (int)_kept.Length);
    }

    private void Drain()
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int n = _stream.Read(buffer, 0, buffer.Length);
                if (n <= 0) return;
                lock (_kept)
                {
                    int room = _cap - (int)_kept.Length;
                    if (n > room)
                    {
                        _kept.Write(buffer, 0, System.Math.Max(0, room));
                        Overflowed = true;
                    }
                    else
                    {
                        _kept.Write(buffer, 0, n);
                    }
                }
                if (Overflowed)
                {
                    _overflow();
                    return;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The pipe was closed under us: the program is gone.
        }
    }
}
