using System.Text.Json;
using OR1.Model.Checkpoints;

namespace OR1.Model.Tokenization;

/// <summary>What <see cref="Qwen2Tokenizer"/> needs from tokenizer.json.</summary>
internal sealed record TokenizerJsonData(
    Dictionary<string, int> Vocab,
    List<string> Merges,
    List<AddedToken> AddedTokens,
    bool Nfc,
    string? UnknownToken);

/// <summary>What <see cref="Qwen2Tokenizer"/> needs from tokenizer_config.json.</summary>
internal sealed record TokenizerConfigData(
    string? BosToken,
    string? EosToken,
    string? PadToken,
    string? ChatTemplate,
    bool AddBosToken,
    bool AddEosToken);

/// <summary>
/// Reads HF tokenizer files with System.Text.Json (Microsoft.ML.Tokenizers has no tokenizer.json loader).
/// Every problem is a <see cref="ModelFormatException"/> naming the file and what is wrong.
/// </summary>
internal static class TokenizerFileReader
{
    public static TokenizerJsonData ReadTokenizerJson(string path)
    {
        using JsonDocument doc = Parse(path);
        JsonElement root = RequireObject(doc.RootElement, "the top level", path);

        if (!root.TryGetProperty("model", out JsonElement model) || model.ValueKind == JsonValueKind.Null)
        {
            throw new ModelFormatException(path, "has no \"model\" object.");
        }

        RequireObject(model, "model", path);
        string? type = OptionalString(model, "type", "model.type", path);
        if (type is not null && type != "BPE")
        {
            throw new ModelFormatException(path, $"model.type is '{type}'; only byte-level BPE (Qwen2) is supported.");
        }

        if (OptionalBool(model, "byte_fallback", "model.byte_fallback", path) == true)
        {
            throw new ModelFormatException(path, "model.byte_fallback is true; only byte-level BPE (Qwen2) is supported.");
        }

        if (OptionalBool(model, "ignore_merges", "model.ignore_merges", path) == true)
        {
            throw new ModelFormatException(path, "model.ignore_merges is true; only plain BPE merging (Qwen2) is supported.");
        }

        foreach (string affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (!string.IsNullOrEmpty(OptionalString(model, affix, "model." + affix, path)))
            {
                throw new ModelFormatException(path, $"model.{affix} is set; byte-level BPE (Qwen2) uses none.");
            }
        }

        Dictionary<string, int> vocab = ReadVocab(model, path);
        List<string> merges = ReadMerges(model, vocab, path);
        string? unk = OptionalString(model, "unk_token", "model.unk_token", path);
        if (unk is not null && !vocab.ContainsKey(unk))
        {
            throw new ModelFormatException(path, $"model.unk_token '{unk}' is not in model.vocab.");
        }

        foreach (char symbol in ByteLevelAlphabet.SymbolsInIdOrder())
        {
            if (!vocab.ContainsKey(symbol.ToString()))
            {
                throw new ModelFormatException(path, $"model.vocab has no entry for the byte-level symbol '{symbol}' (U+{(int)symbol:X4}); not a byte-level BPE vocabulary.");
            }
        }

        List<AddedToken> added = ReadAddedTokens(root, path);
        bool nfc = root.TryGetProperty("normalizer", out JsonElement normalizer) && ReadNormalizer(normalizer, "normalizer", path);
        if (root.TryGetProperty("pre_tokenizer", out JsonElement preTokenizer))
        {
            CheckPreTokenizer(preTokenizer, path);
        }

        return new TokenizerJsonData(vocab, merges, added, nfc, unk);
    }

    public static TokenizerConfigData ReadConfig(string path)
    {
        using JsonDocument doc = Parse(path);
        JsonElement root = RequireObject(doc.RootElement, "the top level", path);
        return new TokenizerConfigData(
            TokenText(root, "bos_token", path),
            TokenText(root, "eos_token", path),
            TokenText(root, "pad_token", path),
            ChatTemplateText(root, path),
            OptionalBool(root, "add_bos_token", "add_bos_token", path) ?? false,
            OptionalBool(root, "add_eos_token", "add_eos_token", path) ?? false);
    }

    private static JsonDocument Parse(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot be read: {e.Message}", e);
        }

        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"is not valid JSON: {e.Message}", e);
        }
    }

    private static Dictionary<string, int> ReadVocab(JsonElement model, string path)
    {
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement) || vocabElement.ValueKind == JsonValueKind.Null)
        {
            throw new ModelFormatException(path, "model.vocab is missing.");
        }

        RequireObject(vocabElement, "model.vocab", path);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var byId = new Dictionary<int, string>();
        foreach (JsonProperty entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw new ModelFormatException(path, $"model.vocab entry '{entry.Name}' has id {entry.Value.GetRawText()}; ids are non-negative integers.");
            }

            if (!vocab.TryAdd(entry.Name, id))
            {
                throw new ModelFormatException(path, $"model.vocab lists '{entry.Name}' twice.");
            }

            if (!byId.TryAdd(id, entry.Name))
            {
                throw new ModelFormatException(path, $"model.vocab gives id {id} to both '{byId[id]}' and '{entry.Name}'.");
            }
        }

        if (vocab.Count == 0)
        {
            throw new ModelFormatException(path, "model.vocab is empty.");
        }

        return vocab;
    }

    /// <summary>
    /// Merges come as "a b" strings (older files) or ["a", "b"] pairs (tokenizers 0.20+); both become the
    /// library's "a b" form, which is unambiguous because byte-level symbols never contain a plain space.
    /// </summary>
    private static List<string> ReadMerges(JsonElement model, Dictionary<string, int> vocab, string path)
    {
        var merges = new List<string>();
        if (!model.TryGetProperty("merges", out JsonElement mergesElement) || mergesElement.ValueKind == JsonValueKind.Null)
        {
            return merges;
        }

        if (mergesElement.ValueKind != JsonValueKind.Array)
        {
            throw new ModelFormatException(path, $"model.merges is a {Describe(mergesElement.ValueKind)}, not an array.");
        }

        int index = 0;
        foreach (JsonElement merge in mergesElement.EnumerateArray())
        {
            string left, right;
            if (merge.ValueKind == JsonValueKind.String)
            {
                string text = merge.GetString()!;
                int space = text.IndexOf(' ');
                if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                {
                    throw new ModelFormatException(path, $"model.merges[{index}] is \"{text}\"; expected two tokens separated by one space.");
                }

                left = text[..space];
                right = text[(space + 1)..];
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                     && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                left = merge[0].GetString()!;
                right = merge[1].GetString()!;
                if (left.Length == 0 || right.Length == 0 || left.Contains(' ') || right.Contains(' '))
                {
                    throw new ModelFormatException(path, $"model.merges[{index}] is {merge.GetRawText()}; byte-level tokens are non-empty and contain no space.");
                }
            }
            else
            {
                throw new ModelFormatException(path, $"model.merges[{index}] is {merge.GetRawText()}; expected \"a b\" or [\"a\", \"b\"].");
            }

            foreach (string token in new[] { left, right, left + right })
            {
                if (!vocab.ContainsKey(token))
                {
                    throw new ModelFormatException(path, $"model.merges[{index}] ({left} + {right}) uses '{token}', which is not in model.vocab.");
                }
            }

            merges.Add(left + " " + right);
            index++;
        }

        return merges;
    }

    private static List<AddedToken> ReadAddedTokens(JsonElement root, string path)
    {
        var added = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out JsonElement array) || array.ValueKind == JsonValueKind.Null)
        {
            return added;
        }

        if (array.ValueKind != JsonValueKind.Array)
        {
            throw new ModelFormatException(path, $"added_tokens is a {Describe(array.ValueKind)}, not an array.");
        }

        var ids = new HashSet<int>();
        var contents = new HashSet<string>(StringComparer.Ordinal);
        int index = 0;
        foreach (JsonElement token in array.EnumerateArray())
        {
            string where = $"added_tokens[{index}]";
            RequireObject(token, where, path);
            if (!token.TryGetProperty("id", out JsonElement idElement) || idElement.ValueKind != JsonValueKind.Number
                || !idElement.TryGetInt32(out int id) || id < 0)
            {
                throw new ModelFormatException(path, $"{where} has no non-negative integer \"id\".");
            }

            string? content = OptionalString(token, "content", where + ".content", path);
            if (string.IsNullOrEmpty(content))
            {
                throw new ModelFormatException(path, $"{where} (id {id}) has no \"content\".");
            }

            if (!ids.Add(id))
            {
                throw new ModelFormatException(path, $"{where}: id {id} appears twice in added_tokens.");
            }

            if (!contents.Add(content))
            {
                throw new ModelFormatException(path, $"{where}: '{content}' appears twice in added_tokens.");
            }

            bool special = OptionalBool(token, "special", where + ".special", path) ?? false;
            added.Add(new AddedToken(id, content, special));
            index++;
        }

        return added;
    }

    /// <summary>
    /// Whether the normalizer is NFC (Qwen2's files), or none. Other normalizers are refused: Qwen2 uses none of
    /// them, so a file asking for one is more likely a different model family than something to support.
    /// </summary>
    private static bool ReadNormalizer(JsonElement normalizer, string where, string path)
    {
        if (normalizer.ValueKind == JsonValueKind.Null)
        {
            return false;
        }

        RequireObject(normalizer, where, path);
        string? type = OptionalString(normalizer, "type", where + ".type", path);
        switch (type)
        {
            case "NFC":
                return true;
            case "Sequence":
                if (!normalizer.TryGetProperty("normalizers", out JsonElement list) || list.ValueKind != JsonValueKind.Array)
                {
                    throw new ModelFormatException(path, $"{where} is a Sequence without a \"normalizers\" array.");
                }

                bool nfc = false;
                int i = 0;
                foreach (JsonElement inner in list.EnumerateArray())
                {
                    nfc |= ReadNormalizer(inner, $"{where}.normalizers[{i++}]", path);
                }

                return nfc;
            default:
                throw new ModelFormatException(path, $"{where}.type is '{type}'; only the NFC normalizer (Qwen2's) is supported.");
        }
    }

    /// <summary>
    /// The tokenizer is always Qwen2's byte-level pre-tokenizer (<see cref="Qwen2PreTokenizer"/>); a file that
    /// declares something else is refused rather than silently tokenized differently from HF.
    /// </summary>
    private static void CheckPreTokenizer(JsonElement preTokenizer, string path)
    {
        if (preTokenizer.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        var steps = new List<JsonElement>();
        Flatten(preTokenizer, steps, path);
        bool hasQwenSplit = false;
        foreach (JsonElement step in steps)
        {
            string? type = OptionalString(step, "type", "pre_tokenizer.type", path);
            if (type == "Split")
            {
                string? regex = step.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object
                    ? OptionalString(pattern, "Regex", "pre_tokenizer Split pattern.Regex", path)
                    : null;
                string? behavior = OptionalString(step, "behavior", "pre_tokenizer Split behavior", path);
                bool invert = OptionalBool(step, "invert", "pre_tokenizer Split invert", path) ?? false;
                if (regex != Qwen2PreTokenizer.Pattern || (behavior is not null && behavior != "Isolated") || invert)
                {
                    throw new ModelFormatException(path, "pre_tokenizer has a Split that is not Qwen2's (regex, Isolated, not inverted); other pre-tokenizers are not supported.");
                }

                hasQwenSplit = true;
            }
            else if (type == "ByteLevel")
            {
                if (OptionalBool(step, "add_prefix_space", "pre_tokenizer ByteLevel add_prefix_space", path) == true
                    || OptionalBool(step, "use_regex", "pre_tokenizer ByteLevel use_regex", path) == true)
                {
                    throw new ModelFormatException(path, "pre_tokenizer ByteLevel uses add_prefix_space or its own regex (GPT-2 style); only Qwen2's pre-tokenizer is supported.");
                }
            }
            else
            {
                throw new ModelFormatException(path, $"pre_tokenizer type '{type}' is not supported; only Qwen2's Split + ByteLevel is.");
            }
        }

        if (!hasQwenSplit)
        {
            throw new ModelFormatException(path, "pre_tokenizer has no Split with Qwen2's regex; only Qwen2's pre-tokenizer is supported.");
        }
    }

    private static void Flatten(JsonElement node, List<JsonElement> steps, string path)
    {
        RequireObject(node, "pre_tokenizer", path);
        if (OptionalString(node, "type", "pre_tokenizer.type", path) == "Sequence")
        {
            if (!node.TryGetProperty("pretokenizers", out JsonElement list) || list.ValueKind != JsonValueKind.Array)
            {
                throw new ModelFormatException(path, "pre_tokenizer is a Sequence without a \"pretokenizers\" array.");
            }

            foreach (JsonElement inner in list.EnumerateArray())
            {
                Flatten(inner, steps, path);
            }
        }
        else
        {
            steps.Add(node);
        }
    }

    /// <summary>bos_token etc.: null, a string, or an AddedToken object with "content".</summary>
    private static string? TokenText(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out JsonElement content)
            && content.ValueKind == JsonValueKind.String)
        {
            return content.GetString();
        }

        throw new ModelFormatException(path, $"{name} is {value.GetRawText()}; expected a string or an object with \"content\".");
    }

    /// <summary>chat_template: a string, or a list of {"name", "template"} (the "default" one, else the first).</summary>
    private static string? ChatTemplateText(JsonElement root, string path)
    {
        if (!root.TryGetProperty("chat_template", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            string? first = null;
            foreach (JsonElement entry in value.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("template", out JsonElement t)
                    || t.ValueKind != JsonValueKind.String)
                {
                    throw new ModelFormatException(path, "chat_template list entries need a \"template\" string.");
                }

                string? name = entry.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
                if (name == "default")
                {
                    return t.GetString();
                }

                first ??= t.GetString();
            }

            return first;
        }

        throw new ModelFormatException(path, $"chat_template is a {Describe(value.ValueKind)}; expected a string.");
    }

    private static JsonElement RequireObject(JsonElement element, string where, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, $"{where} is a {Describe(element.ValueKind)}, not an object.");
        }

        return element;
    }

    private static string? OptionalString(JsonElement obj, string name, string where, string path)
    {
        if (!obj.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw new ModelFormatException(path, $"{where} is a {Describe(value.ValueKind)}, not a string.");
    }

    private static bool? OptionalBool(JsonElement obj, string name, string where, string path)
    {
        if (!obj.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelFormatException(path, $"{where} is a {Describe(value.ValueKind)}, not a boolean."),
        };
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
