using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace OR1.Model.Checkpoints;

/// <summary>
/// A safetensors file opened for reading through a memory map. The format: an unsigned 64-bit
/// little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name to
/// <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (plus an optional <c>"__metadata__"</c>
/// object of strings), then the data section, to which the offsets are relative.
/// <see cref="Open"/> validates the whole header against the file before any tensor is read, and
/// every problem is a <see cref="ModelFormatException"/> naming the file, the problem and the tensor.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted, as in the reference implementation (100 MB).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const string MetadataKey = "__metadata__";
    private const int ChunkElements = 1 << 20;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _data;

    private SafetensorsFile(string path, long dataOffset, long dataLength, IReadOnlyDictionary<string, TensorEntry> tensors,
        IReadOnlyDictionary<string, string> metadata, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        FilePath = path;
        DataOffset = dataOffset;
        DataLength = dataLength;
        Tensors = tensors;
        Metadata = metadata;
        _map = map;
        _view = view;
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        _data = start + view.PointerOffset + dataOffset;
    }

    /// <summary>The path the file was opened from.</summary>
    public string FilePath { get; }

    /// <summary>Offset of the data section from the start of the file: 8 + the header length.</summary>
    public long DataOffset { get; }

    /// <summary>Length in bytes of the data section.</summary>
    public long DataLength { get; }

    /// <summary>The tensors of the header, by name.</summary>
    public IReadOnlyDictionary<string, TensorEntry> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> entries (for example <c>format</c> = <c>pt</c>); empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <param name="path">The file to open.</param>
    /// <exception cref="ModelFormatException">
    /// The file is missing or unreadable, shorter than the 8-byte length prefix, its header length runs past the
    /// end of the file, the header is not a JSON object, a tensor lacks or mistypes dtype/shape/data_offsets,
    /// has an unknown dtype, a byte range that does not match its shape, runs past the data section or overlaps
    /// another tensor's.
    /// </exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors reading needs a little-endian host");
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ModelFormatException(path, "file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot be opened: {e.Message}", e);
        }

        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
                throw new ModelFormatException(path, $"file is {fileLength} bytes, shorter than the 8-byte header length prefix (truncated or not a safetensors file)");
            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > (ulong)(fileLength - 8))
                throw new ModelFormatException(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes, so at most {fileLength - 8} bytes of header)");
            if (headerLength > MaxHeaderLength)
                throw new ModelFormatException(path, $"header length {headerLength} exceeds the {MaxHeaderLength}-byte limit");
            var header = new byte[headerLength];
            stream.ReadExactly(header);

            long dataOffset = 8 + (long)headerLength;
            long dataLength = fileLength - dataOffset;
            var (tensors, metadata) = ParseHeader(path, header, dataLength);

            var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            try
            {
                var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                return new SafetensorsFile(path, dataOffset, dataLength, tensors, metadata, map, view);
            }
            catch
            {
                map.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stream.Dispose();
            throw new ModelFormatException(path, $"cannot be read: {e.Message}", e);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The entry of tensor <paramref name="name"/>.</summary>
    /// <exception cref="ModelFormatException">The file has no tensor of that name.</exception>
    public TensorEntry GetEntry(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!Tensors.TryGetValue(name, out var entry))
            throw new ModelFormatException(FilePath, $"no tensor named '{name}'");
        return entry;
    }

    /// <summary>Reads tensor <paramref name="name"/> into <paramref name="destination"/>, widening BF16 and F16 to float exactly.</summary>
    /// <param name="name">The tensor's name.</param>
    /// <param name="destination">Receives the elements in row-major order; its length must be the tensor's element count.</param>
    /// <exception cref="ModelFormatException">No such tensor, or its dtype is not F32, BF16 or F16.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has the wrong length.</exception>
    /// <exception cref="ObjectDisposedException">The file was disposed.</exception>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        var entry = FloatEntry(name);
        if (destination.Length != entry.ElementCount)
            throw new ArgumentException($"tensor '{name}' in {FilePath} has {entry.ElementCount} elements (shape {entry.ShapeText}), but the destination holds {destination.Length}", nameof(destination));
        ReadAsFloat32(name, 0, destination);
    }

    /// <summary>
    /// Reads elements [<paramref name="start"/>, start + destination.Length) of tensor <paramref name="name"/> (row-major)
    /// as floats: a part of a tensor, as a rank of a sharded optimizer loads its slice of the moments, or a tensor longer
    /// than one span, a piece at a time.
    /// </summary>
    /// <exception cref="ModelFormatException">No such tensor, or its dtype is not F32, BF16 or F16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range runs outside the tensor.</exception>
    /// <exception cref="ObjectDisposedException">The file was disposed.</exception>
    public void ReadAsFloat32(string name, long start, Span<float> destination)
    {
        var entry = FloatEntry(name);
        if (start < 0 || start > entry.ElementCount - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(start), $"elements [{start}, {start + destination.Length}) of tensor '{name}' in {FilePath}: it has {entry.ElementCount} (shape {entry.ShapeText})");
        int size = entry.DType.SizeOf();
        byte* source = DataPointer(entry) + size * start;
        for (int at = 0; at < destination.Length; at += ChunkElements)
        {
            int count = Math.Min(ChunkElements, destination.Length - at);
            var target = destination.Slice(at, count);
            byte* from = source + (long)size * at;
            switch (entry.DType)
            {
                case SafetensorsDType.F32:
                    new ReadOnlySpan<byte>(from, 4 * count).CopyTo(MemoryMarshal.AsBytes(target));
                    break;
                case SafetensorsDType.BF16:
                    WidenBFloat16(new ReadOnlySpan<ushort>(from, count), target);
                    break;
                default:
                    TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(from, count), target);
                    break;
            }
        }
    }

    private TensorEntry FloatEntry(string name)
    {
        var entry = GetEntry(name);
        if (!entry.DType.IsReadableAsFloat())
            throw new ModelFormatException(FilePath, $"tensor '{name}' has dtype {entry.DType}, which cannot be read as floats (only F32, BF16 and F16 can)");
        return entry;
    }

    /// <summary>Reads tensor <paramref name="name"/> into a new float array (see <see cref="ReadAsFloat32(string, Span{float})"/>).</summary>
    public float[] ReadAsFloat32(string name)
    {
        var entry = GetEntry(name);
        if (entry.ElementCount > Array.MaxLength)
            throw new ModelFormatException(FilePath, $"tensor '{name}' has {entry.ElementCount} elements, too many for one array");
        var result = GC.AllocateUninitializedArray<float>((int)entry.ElementCount);
        ReadAsFloat32(name, result);
        return result;
    }

    /// <summary>Copies tensor <paramref name="name"/>'s raw little-endian bytes, whatever its dtype.</summary>
    /// <param name="name">The tensor's name.</param>
    /// <param name="destination">Receives the bytes; its length must be the tensor's byte length.</param>
    /// <exception cref="ModelFormatException">No such tensor.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has the wrong length.</exception>
    public void ReadBytes(string name, Span<byte> destination)
    {
        var entry = GetEntry(name);
        if (destination.Length != entry.ByteLength)
            throw new ArgumentException($"tensor '{name}' in {FilePath} has {entry.ByteLength} bytes, but the destination holds {destination.Length}", nameof(destination));
        new ReadOnlySpan<byte>(DataPointer(entry), destination.Length).CopyTo(destination);
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        if (_data == null) return;
        _data = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    private byte* DataPointer(TensorEntry entry)
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        return _data + entry.DataBegin;
    }

    /// <summary>bfloat16 to float: the 16 bits become the upper half of the binary32.</summary>
    private static void WidenBFloat16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int width = Vector<ushort>.Count;
            int half = Vector<uint>.Count;
            for (; i <= source.Length - width; i += width)
            {
                Vector.Widen(new Vector<ushort>(source[i..]), out Vector<uint> low, out Vector<uint> high);
                (low << 16).CopyTo(bits[i..]);
                (high << 16).CopyTo(bits[(i + half)..]);
            }
        }
        for (; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    private static (IReadOnlyDictionary<string, TensorEntry>, IReadOnlyDictionary<string, string>) ParseHeader(
        string path, byte[] header, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"header ({header.Length} bytes) is not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, $"header must be a JSON object, but is a JSON {root.ValueKind.ToString().ToLowerInvariant()}");

            var tensors = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (name == MetadataKey)
                {
                    if (sawMetadata) throw new ModelFormatException(path, $"header lists '{MetadataKey}' twice");
                    sawMetadata = true;
                    ParseMetadata(path, property.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(name))
                    throw new ModelFormatException(path, $"header lists tensor '{name}' twice");
                tensors.Add(name, ParseTensor(path, name, property.Value, dataLength));
            }

            CheckNoOverlap(path, tensors.Values);
            return (tensors, metadata);
        }
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, $"'{MetadataKey}' must be a JSON object of strings, but is a JSON {value.ValueKind.ToString().ToLowerInvariant()}");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, $"'{MetadataKey}' entry '{item.Name}' must be a string, but is a JSON {item.Value.ValueKind.ToString().ToLowerInvariant()}");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                throw new ModelFormatException(path, $"'{MetadataKey}' lists '{item.Name}' twice");
        }
    }

    private static TensorEntry ParseTensor(string path, string name, JsonElement value, long dataLength)
    {
        ModelFormatException Error(string problem) => new(path, $"tensor '{name}': {problem}");

        if (value.ValueKind != JsonValueKind.Object)
            throw Error($"entry must be a JSON object with dtype, shape and data_offsets, but is a JSON {value.ValueKind.ToString().ToLowerInvariant()}");

        if (!value.TryGetProperty("dtype", out var dtypeElement)) throw Error("missing field 'dtype'");
        if (dtypeElement.ValueKind != JsonValueKind.String) throw Error($"field 'dtype' must be a string, but is {dtypeElement.GetRawText()}");
        string dtypeText = dtypeElement.GetString()!;
        if (!SafetensorsDTypeInfo.TryParse(dtypeText, out var dtype)) throw Error($"unknown dtype '{dtypeText}'");

        if (!value.TryGetProperty("shape", out var shapeElement)) throw Error("missing field 'shape'");
        if (shapeElement.ValueKind != JsonValueKind.Array) throw Error($"field 'shape' must be an array of non-negative integers, but is {Truncate(shapeElement.GetRawText())}");
        var shape = new long[shapeElement.GetArrayLength()];
        int d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out shape[d]) || shape[d] < 0)
                throw Error($"field 'shape' must be an array of non-negative integers, but is {Truncate(shapeElement.GetRawText())}");
            d++;
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsElement)) throw Error("missing field 'data_offsets'");
        if (offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
            throw Error($"field 'data_offsets' must be an array [begin, end] of two non-negative integers, but is {Truncate(offsetsElement.GetRawText())}");
        if (!offsetsElement[0].TryGetNonNegative(out long begin) || !offsetsElement[1].TryGetNonNegative(out long end))
            throw Error($"field 'data_offsets' must be an array [begin, end] of two non-negative integers, but is {Truncate(offsetsElement.GetRawText())}");
        if (end < begin) throw Error($"data_offsets [{begin}, {end}] end before they begin");

        long expectedBytes;
        try
        {
            long count = 1;
            foreach (long dim in shape) count = checked(count * dim);
            expectedBytes = checked(count * dtype.SizeOf());
        }
        catch (OverflowException)
        {
            throw Error($"shape {TensorEntry.FormatShape(shape)} is too large");
        }
        if (end - begin != expectedBytes)
            throw Error($"data_offsets [{begin}, {end}] cover {end - begin} bytes, but shape {TensorEntry.FormatShape(shape)} of {dtype} needs {expectedBytes} bytes");
        if (end > dataLength)
            throw Error($"data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes)");
        return new TensorEntry(name, dtype, shape, begin, end);
    }

    private static void CheckNoOverlap(string path, IEnumerable<TensorEntry> entries)
    {
        // Empty tensors own no bytes, so they cannot overlap anything.
        var sorted = entries.Where(e => e.ByteLength > 0).OrderBy(e => e.DataBegin).ThenBy(e => e.DataEnd).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            var previous = sorted[i - 1];
            var current = sorted[i];
            if (current.DataBegin < previous.DataEnd)
                throw new ModelFormatException(path,
                    $"tensor '{current.Name}' byte range [{current.DataBegin}, {current.DataEnd}) overlaps tensor '{previous.Name}' byte range [{previous.DataBegin}, {previous.DataEnd})");
        }
    }

    private static string Truncate(string text) => text.Length <= 60 ? text : text[..57] + "...";
}

/// <summary>JSON helpers for the safetensors header.</summary>
file static class JsonElementExtensions
{
    public static bool TryGetNonNegative(this JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out value) && value >= 0;
    }
}
