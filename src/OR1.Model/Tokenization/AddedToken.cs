namespace OR1.Model.Tokenization;

/// <summary>
/// A token from tokenizer.json's added_tokens: matched as a whole wherever its text appears in the input,
/// before any pre-tokenization. <paramref name="Special"/> tokens (BOS, EOS, ...) are the ones
/// <c>skipSpecialTokens</c> drops when decoding; non-special added tokens (DeepSeek-R1-Distill's
/// &lt;｜User｜&gt;, &lt;think&gt;) are kept, as in HF.
/// </summary>
/// <param name="Id">The token id.</param>
/// <param name="Content">The exact text of the token.</param>
/// <param name="Special">tokenizer.json's "special" flag.</param>
public sealed record AddedToken(int Id, string Content, bool Special);
