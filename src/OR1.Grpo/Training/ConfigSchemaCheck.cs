using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace OR1.Grpo.Training;

/// <summary>
/// Checks a <see cref="ConfigDocument"/> against the serialization contract of a type before it is deserialized:
/// every key is known (else the nearest known key is suggested), every value has the kind its property needs,
/// and every required field (a constructor parameter without a default) is present. The first problem in the
/// file's order is thrown as a <see cref="TrainingConfigException"/> at its line.
/// </summary>
internal sealed class ConfigSchemaCheck
{
    private readonly ConfigDocument _document;
    private readonly JsonSerializerOptions _options;
    private Dictionary<string, string>? _keyHomes;
    private Type _rootType = typeof(object);

    public ConfigSchemaCheck(ConfigDocument document)
    {
        _document = document;
        _options = document.Options;
        if (!_options.IsReadOnly) _options.MakeReadOnly(populateMissingResolver: true);
    }

    public void CheckRoot(ConfigNode root, Type type)
    {
        _rootType = type;
        if (root.Kind != JsonTokenType.StartObject)
            throw _document.Error(root, $"a config is a JSON object ({{ \"key\": value, ... }}), not {root.Describe()}");
        CheckObject(root, type, "");
    }

    private void CheckObject(ConfigNode node, Type type, string path)
    {
        var info = _options.GetTypeInfo(type);
        var settable = Settable(info).ToDictionary(p => p.Name, StringComparer.Ordinal);
        bool disallowUnknown = (info.UnmappedMemberHandling ?? _options.UnmappedMemberHandling) == JsonUnmappedMemberHandling.Disallow;
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var member in node.Members)
        {
            string keyPath = path.Length == 0 ? member.Key : $"{path}.{member.Key}";
            present.Add(member.Key);
            if (settable.TryGetValue(member.Key, out var property))
            {
                // A count that may be "auto" (micro_batch_tokens): the string is checked here, a number as any integer.
                if (property.CustomConverter is TokensOrAutoConverter && member.Value.Kind == JsonTokenType.String)
                {
                    if (!string.Equals(member.Value.Text, "auto", StringComparison.OrdinalIgnoreCase))
                        throw _document.Error(member.Value, $"'{keyPath}' must be a token count or \"auto\", not {ConfigNode.Shorten(member.Value.Raw)}");
                    continue;
                }
                Check(member.Value, property.PropertyType, IsNullable(property), Description(property), keyPath);
            }
            else if (disallowUnknown && !info.Properties.Any(p => p.Name == member.Key)) // get-only properties are skipped, as the serializer does
                throw _document.Error(member.KeyOffset, UnknownKey(member.Key, keyPath, path, info, settable.Keys));
        }
        var missing = settable.Values.Where(p => IsRequired(p) && !present.Contains(p.Name)).ToList();
        if (missing.Count > 0)
        {
            string first = path.Length == 0 ? missing[0].Name : $"{path}.{missing[0].Name}";
            var required = settable.Values.Where(IsRequired).Select(p => p.Name).ToList();
            string whole = path.Length == 0 ? "the config" : $"{Article(Noun(type))} {Noun(type)}";
            throw _document.Error(node, $"'{first}' is missing ({whole} needs {Join(required)})");
        }
    }

    private string UnknownKey(string key, string keyPath, string path, JsonTypeInfo info, IEnumerable<string> known)
    {
        var knownKeys = known.ToList();
        if (KeySuggestion.Nearest(key, knownKeys) is { } suggestion) return $"unknown key '{keyPath}': did you mean '{suggestion}'?";
        string here = path.Length == 0 ? "at the top level" : $"in {GenericPath(path)}";
        if (KeyHomes().TryGetValue(key, out string? home) && home != here)
            return $"unknown key '{keyPath}': '{key}' belongs {home}, not {here}";
        string whose = path.Length == 0 ? "the config" : $"{Article(Noun(info.Type))} {Noun(info.Type)}";
        return $"unknown key '{keyPath}' ({whose} knows: {string.Join(", ", knownKeys)})";
    }

    /// <summary>For each key of the root type or of the objects it holds, where it belongs ("at the top level", "in stages[i]").</summary>
    private Dictionary<string, string> KeyHomes()
    {
        if (_keyHomes is not null) return _keyHomes;
        var homes = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<Type>();
        void Walk(Type type, string pattern)
        {
            if (!seen.Add(type)) return;
            foreach (var property in Settable(_options.GetTypeInfo(type)))
            {
                homes.TryAdd(property.Name, pattern.Length == 0 ? "at the top level" : $"in {pattern}");
                string child = pattern.Length == 0 ? property.Name : $"{pattern}.{property.Name}";
                var t = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                var childInfo = _options.GetTypeInfo(t);
                if (childInfo.Kind == JsonTypeInfoKind.Object) Walk(t, child);
                else if (childInfo.Kind == JsonTypeInfoKind.Enumerable && childInfo.ElementType is { } e && _options.GetTypeInfo(e).Kind == JsonTypeInfoKind.Object)
                    Walk(e, child + "[i]");
            }
        }
        Walk(_rootType, "");
        return _keyHomes = homes;
    }

    private static string GenericPath(string path) => System.Text.RegularExpressions.Regex.Replace(path, @"\[\d+\]", "[i]");

    private void Check(ConfigNode node, Type type, bool nullable, string? description, string path)
    {
        if (!Fits(node, type, nullable))
        {
            string expected = Expected(type, nullable, description);
            if (Enum(type) is not null)
            {
                string hint = node.Kind == JsonTokenType.String && KeySuggestion.Nearest(node.Text!, EnumNames(type)) is { } s ? $"; did you mean '{s}'?" : "";
                string actual = node.Kind == JsonTokenType.String ? ConfigNode.Shorten(node.Raw) : node.Describe();
                throw _document.Error(node, $"'{path}' must be {expected} (not {actual}{hint})");
            }
            throw _document.Error(node, $"'{path}' must be {expected}, not {node.Describe()}{OutOfRange(node, type)}");
        }
        if (node.Kind == JsonTokenType.StartObject && KindOf(type) == JsonTypeInfoKind.Object)
        {
            CheckObject(node, Nullable.GetUnderlyingType(type) ?? type, path);
        }
        else if (node.Kind == JsonTokenType.StartArray && KindOf(type) == JsonTypeInfoKind.Enumerable && ElementType(type) is { } element)
        {
            for (int i = 0; i < node.Items.Count; i++)
            {
                var item = node.Items[i];
                if (!Fits(item, element, nullable: false))
                    throw _document.Error(item, $"'{path}' must be {Expected(type, nullable, description)}, but {path}[{i}] is {item.Describe()}{OutOfRange(item, element)}");
                Check(item, element, nullable: false, null, $"{path}[{i}]");
            }
        }
    }

    /// <summary>Whether a value of this kind can be read as <paramref name="type"/> (objects and lists: their shape only).</summary>
    private bool Fits(ConfigNode node, Type type, bool nullable)
    {
        var underlying = Nullable.GetUnderlyingType(type);
        if (node.Kind == JsonTokenType.Null) return nullable || underlying is not null;
        var t = underlying ?? type;
        if (t == typeof(string)) return node.Kind == JsonTokenType.String;
        if (t == typeof(bool)) return node.Kind is JsonTokenType.True or JsonTokenType.False;
        if (IsInteger(t) || IsReal(t)) return node.Kind == JsonTokenType.Number && Reads(node, t);
        if (t.IsEnum)
        {
            bool named = EnumNamesAreStrings(t);
            if (node.Kind != (named ? JsonTokenType.String : JsonTokenType.Number) || !Reads(node, t, out object? value)) return false;
            return System.Enum.IsDefined(t, value!);
        }
        return KindOf(t) switch
        {
            JsonTypeInfoKind.Object => node.Kind == JsonTokenType.StartObject,
            JsonTypeInfoKind.Dictionary => node.Kind == JsonTokenType.StartObject,
            JsonTypeInfoKind.Enumerable => node.Kind == JsonTokenType.StartArray,
            _ => true, // a type of its own converter: the serializer judges it
        };
    }

    private bool Reads(ConfigNode node, Type type) => Reads(node, type, out _);

    private bool Reads(ConfigNode node, Type type, out object? value)
    {
        try
        {
            value = JsonSerializer.Deserialize(node.Raw, type, _options);
            return true;
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            value = null;
            return false;
        }
    }

    /// <summary>" (too large)" for an integer literal that does not fit <paramref name="type"/>.</summary>
    private static string OutOfRange(ConfigNode node, Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        if (node.Kind != JsonTokenType.Number || !IsInteger(t)) return "";
        if (node.Raw.StartsWith('-') && IsUnsigned(t)) return "";
        return node.Raw.TrimStart('-').All(char.IsAsciiDigit) ? " (out of range)" : "";
    }

    /// <summary>What a value of <paramref name="type"/> must be, in the config's words: "a number", "a list of stage objects".</summary>
    private string Expected(Type type, bool nullable, string? description)
    {
        if (description is not null) return description;
        var underlying = Nullable.GetUnderlyingType(type);
        string core = Plain(underlying ?? type);
        return nullable || underlying is not null ? $"{core} or null" : core;
    }

    private string Plain(Type t)
    {
        if (t == typeof(string)) return "a string";
        if (t == typeof(bool)) return "true or false";
        if (IsUnsigned(t)) return "a non-negative integer";
        if (IsInteger(t)) return "an integer";
        if (IsReal(t)) return "a number";
        if (t.IsEnum) return $"one of: {string.Join(", ", EnumNames(t))}";
        return KindOf(t) switch
        {
            JsonTypeInfoKind.Enumerable when ElementType(t) is { } e => $"a list of {Plural(e)}",
            JsonTypeInfoKind.Enumerable => "a list",
            JsonTypeInfoKind.Object => $"{Article(Noun(t))} {Noun(t)} object",
            JsonTypeInfoKind.Dictionary => "an object",
            _ => $"a {t.Name}",
        };
    }

    private string Plural(Type element)
    {
        var t = Nullable.GetUnderlyingType(element) ?? element;
        if (t == typeof(string)) return "strings";
        if (t == typeof(bool)) return "true/false values";
        if (IsUnsigned(t)) return "non-negative integers";
        if (IsInteger(t)) return "integers";
        if (IsReal(t)) return "numbers";
        if (t.IsEnum) return $"names (each one of: {string.Join(", ", EnumNames(t))})";
        return KindOf(t) switch
        {
            JsonTypeInfoKind.Object => $"{Noun(t)} objects",
            JsonTypeInfoKind.Enumerable => "lists",
            _ => "objects",
        };
    }

    /// <summary>"stage" for StageConfig: the type's name less Config/Settings/Options, in the key naming.</summary>
    private string Noun(Type t)
    {
        string name = t.Name;
        foreach (var suffix in new[] { "Config", "Settings", "Options", "Schedule" })
            if (name.Length > suffix.Length && name.EndsWith(suffix, StringComparison.Ordinal)) { name = name[..^suffix.Length]; break; }
        return JsonNamingPolicy.SnakeCaseLower.ConvertName(name).Replace('_', ' ');
    }

    private static string Article(string noun) => noun.Length > 0 && "aeiou".Contains(noun[0]) ? "an" : "a";

    private static string Join(IReadOnlyList<string> items) =>
        items.Count <= 1 ? string.Join("", items) : $"{string.Join(", ", items.Take(items.Count - 1))} and {items[^1]}";

    private IReadOnlyList<string> EnumNames(Type t)
    {
        var type = Nullable.GetUnderlyingType(t) ?? t;
        return System.Enum.GetValues(type).Cast<object>()
            .Select(v => JsonSerializer.Serialize(v, type, _options))
            .Select(json => json.StartsWith('"') ? JsonSerializer.Deserialize<string>(json)! : json)
            .Distinct().ToList();
    }

    private bool EnumNamesAreStrings(Type t) =>
        JsonSerializer.Serialize(System.Enum.GetValues(t).GetValue(0), t, _options).StartsWith('"');

    private static Type? Enum(Type t) => (Nullable.GetUnderlyingType(t) ?? t) is { IsEnum: true } e ? e : null;

    private JsonTypeInfoKind KindOf(Type t) => _options.GetTypeInfo(Nullable.GetUnderlyingType(t) ?? t).Kind;

    private Type? ElementType(Type t) => _options.GetTypeInfo(Nullable.GetUnderlyingType(t) ?? t).ElementType;

    private static bool IsUnsigned(Type t) => t == typeof(byte) || t == typeof(ushort) || t == typeof(uint) || t == typeof(ulong);

    private static bool IsInteger(Type t) => IsUnsigned(t) || t == typeof(sbyte) || t == typeof(short) || t == typeof(int) || t == typeof(long);

    private static bool IsReal(Type t) => t == typeof(float) || t == typeof(double) || t == typeof(decimal);

    /// <summary>The properties a config may set: those with a setter or a constructor parameter.</summary>
    private static IEnumerable<JsonPropertyInfo> Settable(JsonTypeInfo info) =>
        info.Properties.Where(p => p.Set is not null || p.AssociatedParameter is not null);

    private static bool IsNullable(JsonPropertyInfo p) => p.AssociatedParameter?.IsNullable ?? p.IsSetNullable;

    /// <summary>Required: marked so, or a constructor parameter without a default (a positional record's fields).</summary>
    private static bool IsRequired(JsonPropertyInfo p) =>
        p.IsRequired || p.AssociatedParameter is { HasDefaultValue: false, IsMemberInitializer: false };

    private static string? Description(JsonPropertyInfo p)
    {
        static string? From(ICustomAttributeProvider? provider) =>
            provider?.GetCustomAttributes(typeof(ConfigDescriptionAttribute), true).OfType<ConfigDescriptionAttribute>().FirstOrDefault()?.Expected;
        return From(p.AttributeProvider) ?? From(p.AssociatedParameter?.AttributeProvider);
    }
}
