namespace OR1.Model;

/// <summary>
/// Prompt + response sequences packed end to end, in groups (the responses to one prompt): the one shape in which
/// rollouts, evaluation samples and supervised examples travel from the tokenizer to the trainer. Holds the packed
/// tokens, integer group spans, the next-token targets and which packed positions predict a response token, and
/// splits any range of sequences into micro-batches by a token budget. Immutable; the device side is
/// <see cref="MicroBatchBuffers"/>.
/// </summary>
/// <remarks>
/// Position p of sequence s predicts token p + 1, so the response tokens r_0..r_{n-1} of a sequence with a prompt
/// of P tokens are predicted at packed positions <see cref="ResponseStart"/>(s) + j = start(s) + P - 1 + j; the
/// last position of a sequence predicts nothing (target 0, outside the mask).
/// </remarks>
public sealed class ResponseBatch
{
    private readonly int[] _tokens;
    private readonly int[] _sequenceOffsets;
    private readonly int[] _promptLengths;
    private readonly int[] _groupOffsets;
    private readonly int[] _targets;

    private ResponseBatch(int[] tokens, int[] sequenceOffsets, int[] promptLengths, int[] groupOffsets)
    {
        _tokens = tokens;
        _sequenceOffsets = sequenceOffsets;
        _promptLengths = promptLengths;
        _groupOffsets = groupOffsets;
        _targets = new int[tokens.Length];
        for (int s = 0; s < SequenceCount; s++)
        {
            int start = sequenceOffsets[s], end = sequenceOffsets[s + 1];
            Array.Copy(tokens, start + 1, _targets, start, end - start - 1);
        }
        for (int s = 0; s < SequenceCount; s++) ResponseTokenCount += ResponseLength(s);
    }

    /// <summary>Sequences (prompt + response each).</summary>
    public int SequenceCount => _promptLengths.Length;

    /// <summary>Groups; each is a contiguous run of sequences sharing one prompt.</summary>
    public int GroupCount => _groupOffsets.Length - 1;

    /// <summary>Packed tokens of all sequences.</summary>
    public int TokenCount => _tokens.Length;

    /// <summary>Response tokens of all sequences (the positions the losses train on).</summary>
    public int ResponseTokenCount { get; }

    /// <summary>Every token, packed.</summary>
    public ReadOnlySpan<int> Tokens => _tokens;

    /// <summary>Next-token target of every packed position (0 at each sequence's last position).</summary>
    public ReadOnlySpan<int> Targets => _targets;

    /// <summary>Sequence offsets into the packed tokens [SequenceCount + 1].</summary>
    public ReadOnlySpan<int> SequenceOffsets => _sequenceOffsets;

    public int SequenceStart(int sequence) => _sequenceOffsets[sequence];
    public int SequenceLength(int sequence) => _sequenceOffsets[sequence + 1] - _sequenceOffsets[sequence];
    public int PromptLength(int sequence) => _promptLengths[sequence];
    public int ResponseLength(int sequence) => SequenceLength(sequence) - _promptLengths[sequence];

    /// <summary>The packed position that predicts the first response token of <paramref name="sequence"/>.</summary>
    public int ResponseStart(int sequence) => _sequenceOffsets[sequence] + _promptLengths[sequence] - 1;

    public ReadOnlySpan<int> Prompt(int sequence) => _tokens.AsSpan(_sequenceOffsets[sequence], _promptLengths[sequence]);
    public ReadOnlySpan<int> Response(int sequence) => _tokens.AsSpan(_sequenceOffsets[sequence] + _promptLengths[sequence], ResponseLength(sequence));

    /// <summary>The first sequence of <paramref name="group"/>.</summary>
    public int GroupStart(int group) => _groupOffsets[group];

    /// <summary>Sequences in <paramref name="group"/>.</summary>
    public int GroupSize(int group) => _groupOffsets[group + 1] - _groupOffsets[group];

    /// <summary>Group offsets in sequences [GroupCount + 1].</summary>
    public ReadOnlySpan<int> GroupOffsets => _groupOffsets;

    /// <summary>The batch of the given groups only, in the given order (e.g. those rejection sampling keeps).</summary>
    public ResponseBatch SelectGroups(IReadOnlyList<int> groups)
    {
        var builder = new Builder();
        foreach (int g in groups)
        {
            int first = GroupStart(g);
            builder.BeginGroup(Prompt(first));
            for (int s = first; s < first + GroupSize(g); s++) builder.AddResponse(Response(s));
        }
        return builder.Build();
    }

    /// <summary>
    /// Consecutive sequences of [<paramref name="firstSequence"/>, <paramref name="endSequence"/>) packed up to
    /// <paramref name="tokenBudget"/> tokens each; a longer sequence goes alone.
    /// </summary>
    public IReadOnlyList<SequenceRange> SplitByTokens(int firstSequence, int endSequence, int tokenBudget)
    {
        if (firstSequence < 0 || endSequence > SequenceCount || firstSequence > endSequence)
            throw new ArgumentOutOfRangeException(nameof(firstSequence), $"[{firstSequence}, {endSequence}) is not a range of the {SequenceCount} sequences");
        if (tokenBudget < 1) throw new ArgumentOutOfRangeException(nameof(tokenBudget), tokenBudget, "the token budget must be at least 1");
        var ranges = new List<SequenceRange>();
        int start = firstSequence;
        while (start < endSequence)
        {
            int end = start + 1;
            while (end < endSequence && _sequenceOffsets[end + 1] - _sequenceOffsets[start] <= tokenBudget) end++;
            ranges.Add(Range(start, end));
            start = end;
        }
        return ranges;
    }

    /// <summary>The sequences [<paramref name="first"/>, <paramref name="end"/>) as a range.</summary>
    public SequenceRange Range(int first, int end)
    {
        int responseTokens = 0;
        for (int s = first; s < end; s++) responseTokens += ResponseLength(s);
        return new SequenceRange(first, end - first, _sequenceOffsets[first], _sequenceOffsets[end] - _sequenceOffsets[first], responseTokens);
    }

    /// <summary>Builds a batch group by group: <see cref="BeginGroup"/> with the prompt, then <see cref="AddResponse"/> per response.</summary>
    public sealed class Builder
    {
        private readonly List<int> _tokens = [];
        private readonly List<int> _sequenceOffsets = [0];
        private readonly List<int> _promptLengths = [];
        private readonly List<int> _groupOffsets = [0];
        private int[] _prompt = [];

        /// <summary>Starts a group whose responses all follow <paramref name="prompt"/> (at least one token).</summary>
        public Builder BeginGroup(ReadOnlySpan<int> prompt)
        {
            if (prompt.IsEmpty) throw new ArgumentException($"group {_groupOffsets.Count - 1}: the prompt is empty", nameof(prompt));
            CloseGroup();
            _prompt = prompt.ToArray();
            return this;
        }

        /// <summary>Adds one response (possibly empty) to the current group.</summary>
        public Builder AddResponse(ReadOnlySpan<int> response)
        {
            if (_prompt.Length == 0) throw new InvalidOperationException("AddResponse before BeginGroup");
            _tokens.AddRange(_prompt);
            foreach (int t in response) _tokens.Add(t);
            _sequenceOffsets.Add(_tokens.Count);
            _promptLengths.Add(_prompt.Length);
            return this;
        }

        /// <summary>The batch; groups without responses are left out.</summary>
        public ResponseBatch Build()
        {
            CloseGroup();
            _prompt = [];
            return new ResponseBatch(_tokens.ToArray(), _sequenceOffsets.ToArray(), _promptLengths.ToArray(), _groupOffsets.ToArray());
        }

        private void CloseGroup()
        {
            if (_promptLengths.Count > _groupOffsets[^1]) _groupOffsets.Add(_promptLengths.Count);
        }
    }
}

/// <summary>A run of consecutive sequences of a <see cref="ResponseBatch"/> (a micro-batch, a mini-batch).</summary>
/// <param name="FirstSequence">Index of the first sequence.</param>
/// <param name="SequenceCount">Sequences in the range.</param>
/// <param name="TokenStart">Packed position of its first token.</param>
/// <param name="TokenCount">Packed tokens in the range.</param>
/// <param name="ResponseTokens">Response tokens in the range.</param>
public readonly record struct SequenceRange(int FirstSequence, int SequenceCount, int TokenStart, int TokenCount, int ResponseTokens)
{
    /// <summary>One past the last sequence.</summary>
    public int EndSequence => FirstSequence + SequenceCount;
}
