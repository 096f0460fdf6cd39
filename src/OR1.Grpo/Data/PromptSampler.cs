namespace OR1.Grpo.Data;

/// <summary>Where the next batch starts: the epoch and the position in that epoch's order.</summary>
/// <param name="Epoch">0-based pass over the (remaining) examples.</param>
/// <param name="Position">Index, in the epoch's shuffled order, of the next batch's first example.</param>
public readonly record struct SamplerCursor(int Epoch, int Position);

/// <summary>
/// Everything a resumed run needs to draw exactly the batches an uninterrupted run would have drawn, given the
/// same examples in the same order. Plain data: serialises with System.Text.Json.
/// </summary>
/// <param name="Seed">The sampler's seed (checked on restore).</param>
/// <param name="ExampleCount">How many examples the sampler was built with (checked on restore).</param>
/// <param name="Epoch">The cursor's epoch.</param>
/// <param name="Position">The cursor's position.</param>
public sealed record SamplerState(ulong Seed, int ExampleCount, int Epoch, int Position);

/// <summary>
/// Draws batches of prompts the way the recipe's step 1 does: a seeded shuffle of the examples per epoch,
/// consecutive batches of <see cref="BatchSize"/> from that order, and drop_last (the tail of an epoch that
/// cannot fill a batch is not used; the next batch starts the next epoch). Batches never span two epochs.
/// A stage's sampler holds the prompts of that stage (the run builds a new one at each stage, without the prompts the
/// stage transition dropped).
/// <para>
/// Determinism: epoch e's order is a Fisher-Yates shuffle (<see cref="SplitMix64.Shuffle{T}"/>) of the
/// examples, in their original order, by a <see cref="SplitMix64"/> seeded with
/// <c>seed ^ SplitMix64.Mix(e + 1)</c>. It depends only on the seed, the epoch and the examples, so it is the
/// same on every machine, and a sampler restored from <see cref="SaveState"/> continues exactly where the saved
/// one was. Not thread-safe.
/// </para>
/// </summary>
public sealed class PromptSampler
{
    private readonly RlExample[] _examples;
    private readonly int[] _all;
    private int[]? _order;
    private int _orderEpoch = -1;

    /// <summary>A sampler at the start of epoch 0 over <paramref name="examples"/> (duplicates allowed: the code x2 mix).</summary>
    /// <param name="examples">The examples; the sampler keeps its own copy of the list.</param>
    /// <param name="batchSize">Prompts per batch (N of the recipe).</param>
    /// <param name="seed">The shuffle seed.</param>
    public PromptSampler(IReadOnlyList<RlExample> examples, int batchSize, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        _examples = examples.ToArray();
        _all = Enumerable.Range(0, _examples.Length).ToArray();
        BatchSize = batchSize;
        Seed = seed;
    }

    /// <summary>Prompts per batch.</summary>
    public int BatchSize { get; }

    /// <summary>The shuffle seed.</summary>
    public ulong Seed { get; }

    /// <summary>How many examples the sampler draws from.</summary>
    public int Count => _examples.Length;

    /// <summary>Full batches per epoch: Count / BatchSize (drop_last).</summary>
    public int BatchesPerEpoch => Count / BatchSize;

    /// <summary>The epoch of the next batch.</summary>
    public int Epoch { get; private set; }

    /// <summary>The position of the next batch in its epoch's order.</summary>
    public int Position { get; private set; }

    /// <summary>Where the next batch starts.</summary>
    public SamplerCursor Cursor => new(Epoch, Position);

    /// <summary>The next <see cref="BatchSize"/> examples; moves the cursor (to the next epoch when the rest of this one cannot fill a batch).</summary>
    /// <exception cref="InvalidOperationException">fewer examples remain than one batch.</exception>
    public IReadOnlyList<RlExample> NextBatch()
    {
        if (Count < BatchSize)
        {
            throw new InvalidOperationException(
                $"cannot draw a batch of {BatchSize} prompts: only {Count} remain (drop_last)");
        }
        SkipExhaustedEpoch();
        var order = OrderOf(Epoch);
        var batch = new RlExample[BatchSize];
        for (int i = 0; i < BatchSize; i++) batch[i] = _examples[order[Position + i]];
        Position += BatchSize;
        SkipExhaustedEpoch();
        return batch;
    }

    /// <summary>The cursor, for a checkpoint.</summary>
    public SamplerState SaveState() => new(Seed, _examples.Length, Epoch, Position);

    /// <summary>
    /// Puts this sampler where <paramref name="state"/> was saved: the cursor becomes the saved cursor. The sampler must hold the same examples, in the same order, with the same
    /// seed; the batch size may differ (a new stage), in which case an epoch tail too short for one batch is skipped.
    /// </summary>
    /// <exception cref="ArgumentException">a different seed or example count, or a cursor outside the examples.</exception>
    public void RestoreState(SamplerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Seed != Seed) throw new ArgumentException($"the state was saved with seed {state.Seed}, this sampler has seed {Seed}", nameof(state));
        if (state.ExampleCount != _examples.Length)
        {
            throw new ArgumentException($"the state was saved over {state.ExampleCount} examples, this sampler has {_examples.Length}", nameof(state));
        }
        if (state.Epoch < 0) throw new ArgumentException($"negative epoch {state.Epoch}", nameof(state));

        if (state.Position < 0 || state.Position > Count)
        {
            throw new ArgumentException($"position {state.Position} is outside the {Count} examples", nameof(state));
        }
        Epoch = state.Epoch;
        Position = state.Position;
        SkipExhaustedEpoch();
    }

    /// <summary>The whole order of <paramref name="epoch"/> (for inspection and tests).</summary>
    public IReadOnlyList<RlExample> EpochOrder(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        return OrderOf(epoch).Select(i => _examples[i]).ToArray();
    }

    private void SkipExhaustedEpoch()
    {
        if (Position > 0 && Position + BatchSize > Count)
        {
            Epoch++;
            Position = 0;
        }
    }

    private int[] OrderOf(int epoch)
    {
        if (_order is null || _orderEpoch != epoch)
        {
            var order = (int[])_all.Clone();
            new SplitMix64(Seed ^ SplitMix64.Mix((ulong)epoch + 1)).Shuffle(order);
            _order = order;
            _orderEpoch = epoch;
        }
        return _order;
    }
}
