using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace OR1.Grpo.Training;

/// <summary>A place in a config file: 1-based line and column (in characters).</summary>
public readonly record struct ConfigPosition(int Line, int Column)
{
    public override string ToString() => $"line {Line}, column {Column}";
}

/// <summary>
/// How a config key's value is described in errors when the type alone says too little, e.g.
/// <c>[ConfigDescription("a list of file paths")]</c> on an <c>IReadOnlyList&lt;string&gt;</c>.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Parameter)]
public sealed class ConfigDescriptionAttribute(string expected) : Attribute
{
    /// <summary>What the value must be, as the end of "'key' must be ...", e.g. "a list of file paths".</summary>
    public string Expected { get; } = expected;
}

/// <summary>
/// A JSON config file read with the position of every key and value, so that each error names the file, the
/// key's path (<c>stages[1].group_size</c>), the line and column, and what was expected, in the config's own
/// words: malformed JSON, unknown keys (with the nearest known key), values of the wrong kind, missing
/// required fields. The known keys and the kinds of their values come from the target type's serialization
/// contract under the given options (naming policy included), so a new property needs no second list.
/// </summary>
public sealed class ConfigDocument
{
    private readonly byte[] _utf8;
    private readonly int[] _lineStarts;
    private readonly Dictionary<string, int> _offsets;

    /// <summary>The file, as it is named in every error.</summary>
    public string Path { get; }

    /// <summary>The options the document was read with and is deserialized with.</summary>
    public JsonSerializerOptions Options { get; }

    internal ConfigNode Root { get; }

    private ConfigDocument(string path, byte[] utf8, int[] lineStarts, ConfigNode root, Dictionary<string, int> offsets, JsonSerializerOptions options)
    {
        Path = path;
        _utf8 = utf8;
        _lineStarts = lineStarts;
        Root = root;
        _offsets = offsets;
        Options = options;
    }

    /// <summary>Reads <paramref name="path"/>; a missing file or malformed JSON is a <see cref="TrainingConfigException"/>.</summary>
    public static ConfigDocument Load(string path, JsonSerializerOptions options)
    {
        if (!File.Exists(path)) throw new TrainingConfigException(path, "file not found");
        return Parse(path, File.ReadAllText(path), options);
    }

    /// <summary>Parses <paramref name="json"/>, reported as the file <paramref name="path"/>.</summary>
    public static ConfigDocument Parse(string path, string json, JsonSerializerOptions options)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(json);
        int[] lineStarts = LineStarts(utf8);
        var parser = new Parser(utf8, new JsonReaderOptions
        {
            CommentHandling = options.ReadCommentHandling,
            AllowTrailingCommas = options.AllowTrailingCommas,
            MaxDepth = options.MaxDepth,
        });
        ConfigNode root;
        try
        {
            root = parser.ParseDocument();
        }
        catch (JsonException e)
        {
            int line = (int)Math.Min(e.LineNumber ?? 0, lineStarts.Length - 1);
            int offset = (int)Math.Min(lineStarts[line] + (e.BytePositionInLine ?? 0), utf8.Length);
            if (e.Message.Contains("invalid JSON literal", StringComparison.Ordinal))
                while (offset > lineStarts[line] && char.IsAsciiLetter((char)utf8[offset - 1])) offset--; // at the misspelt word, not after it
            string problem = MalformedJson.Describe(e.Message, utf8, offset, parser.OpenContainers, o => Position(utf8, lineStarts, o));
            throw new TrainingConfigException(path, Position(utf8, lineStarts, offset), $"not valid JSON: {problem}");
        }
        return new ConfigDocument(path, utf8, lineStarts, root, parser.Offsets, options);
    }

    /// <summary>
    /// Checks every key and value against <typeparamref name="T"/> (unknown keys, wrong kinds, missing required
    /// fields), then deserializes; every problem is a <see cref="TrainingConfigException"/> with its line.
    /// </summary>
    public T Deserialize<T>() where T : class
    {
        if (Root.Kind == JsonTokenType.Null) throw Error(Root, "the file holds null");
        new ConfigSchemaCheck(this).CheckRoot(Root, typeof(T));
        try
        {
            return JsonSerializer.Deserialize<T>(_utf8, Options) ?? throw Error(Root, "the file holds null");
        }
        catch (JsonException e)
        {
            // The checks above should leave nothing for the serializer to reject; should they miss a case, the
            // serializer's own words still come with the key and the line.
            string key = e.Path is { Length: > 1 } p && p.StartsWith("$.", StringComparison.Ordinal) ? p[2..] : e.Path ?? "";
            ConfigPosition? at = PositionOf(key);
            if (at is null && e.LineNumber is { } line)
            {
                int l = (int)Math.Min(line, _lineStarts.Length - 1);
                at = Position(_utf8, _lineStarts, (int)Math.Min(_lineStarts[l] + (e.BytePositionInLine ?? 0), _utf8.Length));
            }
            string message = MalformedJson.StripPosition(e.Message);
            throw new TrainingConfigException(Path, at, key.Length > 0 ? $"'{key}' could not be read: {message}" : message, e);
        }
    }

    /// <summary>
    /// Where the key <paramref name="keyPath"/> (<c>learning_rate</c>, <c>stages[1].group_size</c>, <c>stages[1]</c>)
    /// is written in the file; null when the file does not hold it.
    /// </summary>
    public ConfigPosition? PositionOf(string keyPath) =>
        _offsets.TryGetValue(keyPath, out int offset) ? Position(_utf8, _lineStarts, offset) : null;

    /// <summary>An error about <paramref name="keyPath"/>, at its line when the file holds it.</summary>
    public TrainingConfigException Error(string keyPath, string problem) => new(Path, PositionOf(keyPath), problem);

    internal TrainingConfigException Error(ConfigNode node, string problem) => new(Path, Position(_utf8, _lineStarts, node.Offset), problem);

    internal TrainingConfigException Error(int offset, string problem) => new(Path, Position(_utf8, _lineStarts, offset), problem);

    private static int[] LineStarts(byte[] utf8)
    {
        var starts = new List<int> { 0 };
        for (int i = 0; i < utf8.Length; i++)
            if (utf8[i] == (byte)'\n') starts.Add(i + 1);
        return starts.ToArray();
    }

    private static ConfigPosition Position(byte[] utf8, int[] lineStarts, int offset)
    {
        offset = Math.Clamp(offset, 0, utf8.Length);
        int line = Array.BinarySearch(lineStarts, offset);
        if (line < 0) line = ~line - 1;
        int column = Encoding.UTF8.GetCharCount(utf8, lineStarts[line], offset - lineStarts[line]) + 1;
        return new ConfigPosition(line + 1, column);
    }

    /// <summary>Reads the whole document into <see cref="ConfigNode"/>s, recording where each key path starts.</summary>
    private sealed class Parser(byte[] utf8, JsonReaderOptions options)
    {
        public Dictionary<string, int> Offsets { get; } = new(StringComparer.Ordinal);

        /// <summary>The objects and lists open at the moment (innermost last): for "never closed" errors.</summary>
        public List<(char Bracket, int Offset)> OpenContainers { get; } = [];

        public ConfigNode ParseDocument()
        {
            var reader = new Utf8JsonReader(utf8, options);
            Next(ref reader);
            var root = Value(ref reader, "");
            while (reader.Read()) { } // anything but comments and blanks after the value is an error
            return root;
        }

        private void Next(ref Utf8JsonReader reader)
        {
            do
            {
                // The reader is given the whole file as its final block, so it throws rather than run out of data.
                if (!reader.Read())
                {
                    int end = (int)reader.BytesConsumed;
                    int lineStart = Array.LastIndexOf(utf8, (byte)'\n', Math.Max(end - 1, 0)) + 1;
                    int line = utf8.AsSpan(0, lineStart).Count((byte)'\n');
                    throw new JsonException("Unexpected end of data.", null, line, end - lineStart);
                }
            }
            while (reader.TokenType == JsonTokenType.Comment);
        }

        private ConfigNode Value(ref Utf8JsonReader reader, string path)
        {
            int offset = (int)reader.TokenStartIndex;
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                {
                    var members = new List<ConfigMember>();
                    OpenContainers.Add(('{', offset));
                    while (true)
                    {
                        Next(ref reader);
                        if (reader.TokenType == JsonTokenType.EndObject) break;
                        string key = reader.GetString()!;
                        int keyOffset = (int)reader.TokenStartIndex;
                        string keyPath = path.Length == 0 ? key : $"{path}.{key}";
                        Offsets[keyPath] = keyOffset;
                        Next(ref reader);
                        members.Add(new ConfigMember(key, keyOffset, Value(ref reader, keyPath)));
                    }
                    OpenContainers.RemoveAt(OpenContainers.Count - 1);
                    return new ConfigNode(JsonTokenType.StartObject, offset) { Members = members };
                }
                case JsonTokenType.StartArray:
                {
                    var items = new List<ConfigNode>();
                    OpenContainers.Add(('[', offset));
                    while (true)
                    {
                        Next(ref reader);
                        if (reader.TokenType == JsonTokenType.EndArray) break;
                        string itemPath = $"{path}[{items.Count}]";
                        Offsets[itemPath] = (int)reader.TokenStartIndex;
                        items.Add(Value(ref reader, itemPath));
                    }
                    OpenContainers.RemoveAt(OpenContainers.Count - 1);
                    return new ConfigNode(JsonTokenType.StartArray, offset) { Items = items };
                }
                case JsonTokenType.String:
                    // ValueSpan is the text between the quotes, still escaped.
                    return new ConfigNode(JsonTokenType.String, offset)
                    {
                        Raw = Encoding.UTF8.GetString(utf8, offset, reader.ValueSpan.Length + 2),
                        Text = reader.GetString(),
                    };
                case JsonTokenType.Number:
                    return new ConfigNode(JsonTokenType.Number, offset) { Raw = Encoding.UTF8.GetString(reader.ValueSpan) };
                case JsonTokenType.True:
                    return new ConfigNode(JsonTokenType.True, offset) { Raw = "true" };
                case JsonTokenType.False:
                    return new ConfigNode(JsonTokenType.False, offset) { Raw = "false" };
                case JsonTokenType.Null:
                    return new ConfigNode(JsonTokenType.Null, offset) { Raw = "null" };
                default:
                    throw new InvalidOperationException($"unexpected JSON token {reader.TokenType}");
            }
        }
    }
}

/// <summary>A JSON value with the byte offset where it starts.</summary>
internal sealed class ConfigNode(JsonTokenType kind, int offset)
{
    /// <summary>StartObject, StartArray, String, Number, True, False or Null.</summary>
    public JsonTokenType Kind { get; } = kind;
    public int Offset { get; } = offset;
    /// <summary>A scalar's JSON text (a string with its quotes and escapes).</summary>
    public string Raw { get; init; } = "";
    /// <summary>A string's value.</summary>
    public string? Text { get; init; }
    public IReadOnlyList<ConfigMember> Members { get; init; } = [];
    public IReadOnlyList<ConfigNode> Items { get; init; } = [];

    /// <summary>The value as "3", "null", "a string ("x")", "a list", for "... not X" and "... is X".</summary>
    public string Describe() => Kind switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "a list",
        JsonTokenType.String => $"a string ({Shorten(Raw)})",
        _ => Shorten(Raw),
    };

    internal static string Shorten(string text) => text.Length <= 40 ? text : text[..37] + "...";
}

/// <summary>A key of a JSON object, where it is written, and its value.</summary>
internal sealed record ConfigMember(string Key, int KeyOffset, ConfigNode Value);

/// <summary>System.Text.Json's complaints about malformed JSON, in plain words.</summary>
internal static partial class MalformedJson
{
    [GeneratedRegex(@"\s*(Path: \S*\s*\|\s*)?LineNumber: \d+ \| BytePositionInLine: \d+\.?\s*$")]
    private static partial Regex PositionSuffix();

    [GeneratedRegex(@"^'(?<c>.*?)' is (?<what>.*)$", RegexOptions.Singleline)]
    private static partial Regex Quoted();

    [GeneratedRegex(@"Expected the literal '(?<lit>\w+)'")]
    private static partial Regex ExpectedLiteral();

    public static string StripPosition(string message) => PositionSuffix().Replace(message, "");

    public static string Describe(string message, byte[] utf8, int offset, IReadOnlyList<(char Bracket, int Offset)> open, Func<int, ConfigPosition> position)
    {
        string m = StripPosition(message);
        if (m.Contains("does not contain any JSON tokens", StringComparison.Ordinal))
            return "the file is empty; a config is one JSON object: { \"key\": value, ... }";
        if (m.Contains("Expected end of string", StringComparison.Ordinal))
            return "a string is never closed (a closing '\"' is missing)";
        if (m.Contains("Expected end of comment", StringComparison.Ordinal))
            return "a /* comment is never closed with */";
        if (m.Contains("Cannot read comments", StringComparison.Ordinal) || m.Contains("comments are not allowed", StringComparison.OrdinalIgnoreCase))
            return "comments are not allowed here";

        var quoted = Quoted().Match(m);
        string found = quoted.Success ? quoted.Groups["c"].Value : "";
        string what = quoted.Success ? quoted.Groups["what"].Value : "";

        if (quoted.Success && what.StartsWith("invalid within a JSON string", StringComparison.Ordinal))
            return found is "0x0A" or "0x0D"
                ? "a string runs to the end of the line (a closing '\"' is missing, or write \\n for a line break)"
                : $"a string holds the control character {found}; write it as an escape such as \\t";
        if (quoted.Success && what.StartsWith("an invalid escapable character", StringComparison.Ordinal))
            return $"'\\{found}' is not an escape a JSON string knows (write \\\\ for a backslash, e.g. in Windows paths, or use /)";
        if (quoted.Success && what.StartsWith("an invalid JSON literal", StringComparison.Ordinal))
        {
            var literal = ExpectedLiteral().Match(what);
            string expected = literal.Success ? literal.Groups["lit"].Value : "true, false or null";
            return $"'{found.TrimEnd(',', '}', ']', ' ', '\t', '\r', '\n')}' is not a value; did you mean {expected}? (strings need double quotes)";
        }

        if (AtEnd(utf8, offset) || m.Contains("Expected depth to be zero", StringComparison.Ordinal) || m.StartsWith("Unexpected end of data", StringComparison.Ordinal))
        {
            if (open.Count > 0)
            {
                var (bracket, at) = open[^1];
                string what2 = bracket == '{' ? "object" : "list";
                return $"the file ends before the {what2} opened with '{bracket}' at {position(at)} is closed with '{(bracket == '{' ? '}' : ']')}'";
            }
            return "the file ends too early";
        }

        if (m.StartsWith("Invalid leading zero", StringComparison.Ordinal))
            return "a number cannot start with 0 (write 1, not 01)";
        if (!quoted.Success) return Lower(m);
        if (what.StartsWith("invalid after a value", StringComparison.Ordinal))
            return $"a ',' is missing before '{found}' (two entries must be separated by a comma)";
        if (what.StartsWith("an invalid start of a property name", StringComparison.Ordinal))
            return found switch
            {
                "," => "two commas in a row (a key is missing between them)",
                "'" => "keys need double quotes (\"key\"), not single quotes",
                _ => $"a key is expected, in double quotes (\"key\"), but it starts with '{found}'",
            };
        if (what.StartsWith("invalid after a property name", StringComparison.Ordinal))
            return $"a ':' is missing after the key (found '{found}')";
        if (what.StartsWith("an invalid start of a value", StringComparison.Ordinal))
            return found switch
            {
                "}" or "]" or "," => $"a value is missing before '{found}'",
                "'" => "strings need double quotes (\"text\"), not single quotes",
                _ => $"a value cannot start with '{found}' (a value is a number, a \"string\", true, false, null, a [list] or an {{object}})",
            };
        if (what.StartsWith("invalid without a matching open", StringComparison.Ordinal))
        {
            if (open.Count > 0)
            {
                var (bracket, at) = open[^1];
                return $"'{found}' does not close the '{bracket}' opened at {position(at)} (it needs '{(bracket == '{' ? '}' : ']')}')";
            }
            return $"'{found}' closes nothing";
        }
        if (what.StartsWith("invalid after a single JSON value", StringComparison.Ordinal))
            return $"there is more after the end of the config ('{found}'); a config is a single JSON object";
        if (what.Contains("number", StringComparison.Ordinal))
            return $"a malformed number at '{found}' (numbers look like 3, -0.5 or 1e-6)";
        return Lower(m);
    }

    private static bool AtEnd(byte[] utf8, int offset)
    {
        for (int i = offset; i < utf8.Length; i++)
            if (utf8[i] is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')) return false;
        return true;
    }

    private static string Lower(string message) =>
        message.Length > 1 && char.IsUpper(message[0]) && !char.IsUpper(message[1]) ? char.ToLowerInvariant(message[0]) + message[1..] : message;
}
