namespace OR1.Grpo.Data;

/// <summary>The recipe's training mix: every code example twice, every math example once, shuffled together.</summary>
public static class DatasetMix
{
    /// <summary>How many times the recipe repeats each code example.</summary>
    public const int DefaultCodeCopies = 2;

    /// <summary>How many times the recipe repeats each math example.</summary>
    public const int DefaultMathCopies = 1;

    /// <summary>
    /// Repeats each code example <paramref name="codeCopies"/> times and each math example
    /// <paramref name="mathCopies"/> times (the same <see cref="RlExample"/> instance, so copies share an Id),
    /// then shuffles with <see cref="SplitMix64"/> seeded by <paramref name="seed"/>: the same input and seed give
    /// the same order on every machine.
    /// </summary>
    public static IReadOnlyList<RlExample> Mix(IEnumerable<RlExample> examples, ulong seed,
        int codeCopies = DefaultCodeCopies, int mathCopies = DefaultMathCopies)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfNegative(codeCopies);
        ArgumentOutOfRangeException.ThrowIfNegative(mathCopies);

        var mixed = new List<RlExample>();
        foreach (var example in examples)
        {
            int copies = example.IsCode ? codeCopies : mathCopies;
            for (int c = 0; c < copies; c++) mixed.Add(example);
        }
        new SplitMix64(seed).Shuffle(mixed);
        return mixed;
    }
}
