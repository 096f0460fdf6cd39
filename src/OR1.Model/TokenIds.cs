namespace OR1.Model;

/// <summary>
/// The host-side range check of token ids (and next-token targets) before they are uploaded. Ids come from the host
/// (tokenizer, rollouts, the sampler's downloaded output), so checking them there costs one vectorised pass and no
/// synchronisation; the kernels then trust them. The message names the argument, the position and the value.
/// </summary>
public static class TokenIds
{
    /// <summary>
    /// Throws when an element of <paramref name="ids"/> is outside [0, <paramref name="vocabSize"/>).
    /// <paramref name="firstPosition"/> is added to the index in the message (the span's place in a packed batch).
    /// </summary>
    /// <exception cref="ArgumentException">The first bad id: its argument, position and value.</exception>
    public static void RequireInVocabulary(ReadOnlySpan<int> ids, int vocabSize, string argument, string what = "token id", int firstPosition = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        // IndexOfAnyExceptInRange is vectorised; nothing is allocated unless an id is bad.
        int bad = ids.IndexOfAnyExceptInRange(0, vocabSize - 1);
        if (bad >= 0)
            throw new ArgumentException(
                $"'{argument}' has {what} {ids[bad]} at position {firstPosition + bad}, outside the vocabulary [0, {vocabSize})", argument);
    }
}
