using Microsoft.ML.Tokenizers;
using OR1.Model.Checkpoints;

namespace OR1.Model.Tokenization;

/// <summary>
/// The tokenizer of a Qwen2-architecture model (Qwen2, DeepSeek-R1-Distill-Qwen): byte-level BPE read from
/// the model directory's tokenizer.json (+ tokenizer_config.json), following HF's fast tokenizer step for step
/// so that it gives the same ids. Immutable after <see cref="Load"/>; safe to use from several threads.
/// </summary>
/// <remarks>
/// <para>What Microsoft.ML.Tokenizers does: the BPE itself — <see cref="BpeTokenizer"/> with
/// <see cref="BpeOptions.ByteLevel"/> maps UTF-8 bytes to GPT-2's byte symbols, applies the merges by rank,
/// calls the pre-tokenizer and normalizer given in <see cref="BpeOptions"/>, and decodes ids (byte symbols back
/// to UTF-8, added-token text verbatim).</para>
/// <para>What is written here by hand, and why: reading tokenizer.json/tokenizer_config.json (the library
/// has no loader for them); the pre-tokenizer (<see cref="Qwen2PreTokenizer"/>, because .NET Regex sees UTF-16
/// code units, not code points); splitting the input on added tokens first, leftmost-longest, with the text
/// between them normalized and pre-tokenized on its own, as HF does (the library only recognizes a special
/// token when a pre-token equals it, and only its own RegexPreTokenizer splits them out, which the hand-written
/// pre-tokenizer replaces); and the HF rule that <c>skipSpecialTokens</c> drops only added tokens flagged
/// special (the library drops every token in its special-token list, which would also drop DeepSeek's
/// non-special <c>&lt;think&gt;</c>).</para>
/// <para>Not supported (refused at load): other pre-tokenizers, normalizers other than NFC,
/// byte fallback, word prefixes/suffixes. Added tokens' lstrip/rstrip/single_word flags are ignored (all false
/// in Qwen2 files), and decoding does no clean_up_tokenization_spaces (false in Qwen2 files).</para>
/// </remarks>
public sealed class Qwen2Tokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly AddedTokenMatcher _matcher;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly string?[] _idToToken;

    private Qwen2Tokenizer(
        BpeTokenizer bpe,
        TokenizerJsonData data,
        int? bosId,
        int? eosId,
        int? padId,
        bool addBos,
        bool addEos,
        ChatTemplate template)
    {
        _bpe = bpe;
        _vocab = data.Vocab;
        AddedTokens = data.AddedTokens;
        _addedByContent = data.AddedTokens.ToDictionary(t => t.Content, StringComparer.Ordinal);
        _addedById = data.AddedTokens.ToDictionary(t => t.Id);
        _matcher = new AddedTokenMatcher(data.AddedTokens);
        int maxId = Math.Max(data.Vocab.Values.Max(), data.AddedTokens.Count == 0 ? -1 : data.AddedTokens.Max(t => t.Id));
        VocabSize = maxId + 1;
        _idToToken = new string?[VocabSize];
        foreach (KeyValuePair<string, int> entry in data.Vocab)
        {
            _idToToken[entry.Value] = entry.Key;
        }

        foreach (AddedToken token in data.AddedTokens)
        {
            _idToToken[token.Id] = token.Content;
        }

        BosId = bosId;
        EosId = eosId;
        PadId = padId;
        AddBosToken = addBos;
        AddEosToken = addEos;
        Template = template;
    }

    /// <summary>
    /// Number of token ids the tokenizer knows: the largest id in model.vocab or added_tokens, plus one
    /// (151665 for DeepSeek-R1-Distill-Qwen). The model's embedding (vocab_size in config.json, 152064) may be
    /// larger; ids past this one decode to nothing.
    /// </summary>
    public int VocabSize { get; }

    /// <summary>The BOS id (tokenizer_config.json's bos_token), or null.</summary>
    public int? BosId { get; }

    /// <summary>The EOS id (tokenizer_config.json's eos_token), or null.</summary>
    public int? EosId { get; }

    /// <summary>The padding id (tokenizer_config.json's pad_token), or null.</summary>
    public int? PadId { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecialTokens prepends BOS (tokenizer_config.json's add_bos_token).</summary>
    public bool AddBosToken { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecialTokens appends EOS (tokenizer_config.json's add_eos_token).</summary>
    public bool AddEosToken { get; }

    /// <summary>tokenizer.json's added tokens (special markers, &lt;think&gt;, ...), in file order.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>The chat template: from tokenizer_config.json's chat_template (or chat_template.jinja); without one,
    /// DeepSeek-R1-Distill when the vocabulary has <c>&lt;｜User｜&gt;</c>, else ChatML.</summary>
    public ChatTemplate Template { get; }

    /// <summary>
    /// Loads the tokenizer of the model in <paramref name="modelDir"/>: tokenizer.json (required) and, when present,
    /// tokenizer_config.json and chat_template.jinja.
    /// </summary>
    /// <exception cref="ModelFormatException">A file is missing, is not valid JSON, or is not a Qwen2 byte-level BPE tokenizer;
    /// the message names the file and the problem.</exception>
    public static Qwen2Tokenizer Load(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        if (!Directory.Exists(modelDir))
        {
            throw new ModelFormatException(modelDir, "model directory not found.");
        }

        string tokenizerPath = Path.Combine(modelDir, "tokenizer.json");
        if (!File.Exists(tokenizerPath))
        {
            throw new ModelFormatException(tokenizerPath, "file not found; the model directory needs tokenizer.json.");
        }

        TokenizerJsonData data = TokenizerFileReader.ReadTokenizerJson(tokenizerPath);

        string configPath = Path.Combine(modelDir, "tokenizer_config.json");
        TokenizerConfigData? config = File.Exists(configPath) ? TokenizerFileReader.ReadConfig(configPath) : null;

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(data.Vocab)
            {
                Merges = data.Merges,
                ByteLevel = true,
                PreTokenizer = Qwen2PreTokenizer.Instance,
                Normalizer = data.Nfc ? NfcNormalizer.Instance : null,
                SpecialTokens = data.AddedTokens.ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal),
                UnknownToken = data.UnknownToken,
            });
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new ModelFormatException(tokenizerPath, $"rejected by the BPE builder: {e.Message}", e);
        }

        int? Resolve(string? token, string name)
        {
            if (token is null)
            {
                return null;
            }

            if (data.AddedTokens.FirstOrDefault(t => t.Content == token) is { } added)
            {
                return added.Id;
            }

            return data.Vocab.TryGetValue(token, out int id)
                ? id
                : throw new ModelFormatException(configPath, $"{name} '{token}' is not a token of tokenizer.json.");
        }

        int? bosId = Resolve(config?.BosToken, "bos_token");
        int? eosId = Resolve(config?.EosToken, "eos_token");
        int? padId = Resolve(config?.PadToken, "pad_token");

        string? jinja = config?.ChatTemplate;
        string templatePath = configPath;
        string jinjaPath = Path.Combine(modelDir, "chat_template.jinja");
        if (jinja is null && File.Exists(jinjaPath))
        {
            templatePath = jinjaPath;
            try
            {
                jinja = File.ReadAllText(jinjaPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ModelFormatException(jinjaPath, $"cannot be read: {e.Message}", e);
            }
        }

        ChatTemplate template;
        if (jinja is not null)
        {
            template = ChatTemplate.FromJinja(jinja, config?.BosToken)
                ?? throw new ModelFormatException(templatePath, "chat_template is neither DeepSeek-R1-Distill (uses <｜User｜>) nor ChatML (uses <|im_start|>); no other template is supported.");
        }
        else
        {
            bool deepSeek = data.AddedTokens.Any(t => t.Content == ChatTemplate.DeepSeekUser) || data.Vocab.ContainsKey(ChatTemplate.DeepSeekUser);
            template = deepSeek ? ChatTemplate.DeepSeekR1Distill(config?.BosToken ?? ChatTemplate.DeepSeekBeginOfSentence) : ChatTemplate.ChatML();
        }

        return new Qwen2Tokenizer(bpe, data, bosId, eosId, padId, config?.AddBosToken ?? false, config?.AddEosToken ?? false, template);
    }

    /// <summary>
    /// Token ids of <paramref name="text"/>. Added tokens in the text (<c>&lt;｜User｜&gt;</c>, <c>&lt;|im_end|&gt;</c>, ...)
    /// become their single ids; the text between them is normalized, pre-tokenized and BPE-encoded.
    /// With <paramref name="addSpecialTokens"/>, BOS/EOS are added as tokenizer_config.json's add_bos_token/add_eos_token say
    /// (DeepSeek-R1-Distill: BOS; Qwen2: nothing). A rendered chat template already starts with BOS: encode it without.
    /// Never throws on text that is not valid Unicode: lone surrogates encode as U+FFFD, noncharacters as themselves.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        // A lone surrogate (a cut string, a bad dataset row) becomes U+FFFD, as UTF-8 conversion does in front of HF's
        // tokenizers; one such character must never end a training run with an exception.
        text = Utf16Text.ReplaceLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addSpecialTokens && AddBosToken && BosId is int bos)
        {
            ids.Add(bos);
        }

        int start = 0;
        foreach ((int offset, AddedToken token) in _matcher.Matches(text))
        {
            EncodeOrdinary(text.AsSpan(start, offset - start), ids);
            ids.Add(token.Id);
            start = offset + token.Content.Length;
        }

        EncodeOrdinary(text.AsSpan(start), ids);
        if (addSpecialTokens && AddEosToken && EosId is int eos)
        {
            ids.Add(eos);
        }

        return ids;
    }

    /// <summary>
    /// The text of <paramref name="ids"/>: the bytes of all tokens concatenated, then read as UTF-8 (an incomplete
    /// or invalid sequence becomes U+FFFD). Added tokens decode to their text; with <paramref name="skipSpecialTokens"/>
    /// those flagged special (BOS, EOS, ...) are dropped. Ids the tokenizer does not know decode to nothing, as in HF.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        IEnumerable<int> kept = skipSpecialTokens ? ids.Where(id => !IsSpecial(id)) : ids;
        return _bpe.Decode(kept, considerSpecialTokens: true);
    }

    /// <summary>Whether <paramref name="id"/> is an added token flagged special (what skipSpecialTokens drops).</summary>
    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out AddedToken? token) && token.Special;

    /// <summary>
    /// The id of <paramref name="token"/>: an added token's text, or a vocabulary entry in its byte-level
    /// spelling (" the" is "Ġthe").
    /// </summary>
    /// <exception cref="KeyNotFoundException">The tokenizer has no such token.</exception>
    public int TokenToId(string token) =>
        TryTokenToId(token, out int id) ? id : throw new KeyNotFoundException($"'{token}' is not a token of this tokenizer.");

    /// <summary>Like <see cref="TokenToId"/>, returning false for an unknown token.</summary>
    public bool TryTokenToId(string token, out int id)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out AddedToken? added))
        {
            id = added.Id;
            return true;
        }

        return _vocab.TryGetValue(token, out id);
    }

    /// <summary>The token string of <paramref name="id"/> (byte-level spelling for vocabulary entries), or null if unknown.</summary>
    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        if (!text.IsEmpty)
        {
            ids.AddRange(_bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true));
        }
    }
}
