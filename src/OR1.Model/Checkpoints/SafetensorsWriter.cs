using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using OR1.Native;

namespace OR1.Model.Checkpoints;

/// <summary>
/// Writes safetensors files the way the reference implementation does: an 8-byte little-endian header
/// length, a JSON header padded with spaces to a multiple of 8 bytes, then the tensors' little-endian
/// bytes back to back in sorted-name order. Files are written to a temporary file in the destination
/// folder and moved into place, so a failure never leaves a partial file behind.
/// </summary>
public static class SafetensorsWriter
{
    private const int ChunkElements = 1 << 16;

    /// <summary>Writes <paramref name="tensors"/> to a safetensors file at <paramref name="path"/>, replacing any existing file.</summary>
    /// <param name="path">Destination file; its folder must exist.</param>
    /// <param name="tensors">Name, shape and row-major float data of each tensor. Names must be unique and non-empty.</param>
    /// <param name="dtype">Storage type: <see cref="SafetensorsDType.F32"/>, <see cref="SafetensorsDType.BF16"/> (rounded to nearest even) or <see cref="SafetensorsDType.F16"/>.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> entries (transformers expects <c>format</c> = <c>pt</c>).</param>
    /// <exception cref="ArgumentException">
    /// An unsupported dtype, an empty, duplicate or reserved name, a negative dimension, or data whose length
    /// is not the product of the shape. Everything is checked before the file is created.
    /// </exception>
    public static void Write(string path, IEnumerable<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors,
        SafetensorsDType dtype = SafetensorsDType.F32, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        var layout = list.Select(t => (t.Name, t.Shape)).ToArray();
        // Names and shapes first (a duplicate is named as such), then every length, before the file is created.
        long[] counts = CheckLayout(layout, nameof(tensors));
        for (int i = 0; i < list.Count; i++)
        {
            var (name, shape, values) = list[i];
            if (values.Length != counts[i])
                throw new ArgumentException($"tensor '{name}' has shape {TensorEntry.FormatShape(shape)} ({counts[i]} elements), but {values.Length} values", nameof(tensors));
        }
        var data = list.ToDictionary(t => t.Name, t => t.Data, StringComparer.Ordinal);
        Write(path, layout, (name, sink) => sink(data[name].Span), dtype, metadata);
    }

    /// <summary>
    /// Writes a safetensors file whose tensors' values come from <paramref name="produce"/> as they are written, one tensor
    /// at a time in <see cref="DataOrder"/>: what lets a checkpoint larger than memory (a 7B model's weights and moments)
    /// be written from device memory, or gathered from the ranks of a data-parallel run, a piece at a time. The file
    /// goes through a temporary file and is moved into place only when every tensor has all its values.
    /// </summary>
    /// <param name="path">Destination file; its folder must exist.</param>
    /// <param name="tensors">Name and shape of each tensor (unique, non-empty names; a tensor may hold more than 2^31 elements).</param>
    /// <param name="produce">Called once per tensor, in <see cref="DataOrder"/>, with its name and a sink that takes its
    /// row-major values in consecutive pieces of any length (converted and written as they come).</param>
    /// <param name="dtype">Storage type: F32, BF16 (rounded to nearest even) or F16.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> entries.</param>
    /// <exception cref="ArgumentException">An unsupported dtype, an empty, duplicate or reserved name or a negative dimension
    /// (before the file is created); or a producer that gives a tensor more or fewer values than its shape holds (then
    /// nothing is left behind: the temporary file is deleted).</exception>
    public static void Write(string path, IReadOnlyList<(string Name, int[] Shape)> tensors, Action<string, Action<ReadOnlySpan<float>>> produce,
        SafetensorsDType dtype = SafetensorsDType.F32, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(produce);
        if (!dtype.IsReadableAsFloat())
            throw new ArgumentException($"cannot write floats as {dtype}; use F32, BF16 or F16", nameof(dtype));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors writing needs a little-endian host");
        long[] counts = CheckLayout(tensors, nameof(tensors));
        // DataOrder itself: the ranks that follow this writer through collectives call it for the same order.
        var index = Enumerable.Range(0, tensors.Count).ToDictionary(i => tensors[i].Name, StringComparer.Ordinal);
        var order = DataOrder(index.Keys).Select(name => (name, tensors[index[name]].Shape, Count: counts[index[name]])).ToList();

        byte[] header = BuildHeader(order, dtype, metadata);
        WriteAtomically(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            var writer = new ValueWriter(stream, dtype);
            foreach (var (name, shape, count) in order)
            {
                long written = 0;
                produce(name, values =>
                {
                    if (written + values.Length > count)
                        throw new ArgumentException($"tensor '{name}' of shape {TensorEntry.FormatShape(shape)} holds {count} values, but more were given ({written + values.Length})", nameof(produce));
                    writer.Write(values);
                    written += values.Length;
                });
                if (written != count)
                    throw new ArgumentException($"tensor '{name}' of shape {TensorEntry.FormatShape(shape)} holds {count} values, but {written} were given", nameof(produce));
            }
        });
    }

    /// <summary>
    /// The order in which <see cref="Write(string, IReadOnlyList{ValueTuple{string, int[]}}, Action{string, Action{ReadOnlySpan{float}}}, SafetensorsDType, IReadOnlyDictionary{string, string}?)"/>
    /// asks for the tensors (and lays out their bytes): by name, ordinal. Data-parallel ranks that feed rank 0's writer
    /// through collectives follow it, so that every rank makes the same calls in the same order.
    /// </summary>
    public static IReadOnlyList<string> DataOrder(IEnumerable<string> names) => names.Order(StringComparer.Ordinal).ToArray();

    /// <summary>Checks names and shapes; returns each tensor's element count.</summary>
    private static long[] CheckLayout(IReadOnlyList<(string Name, int[] Shape)> tensors, string argument)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var counts = new long[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var (name, shape) = tensors[i];
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("a tensor has an empty name", argument);
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", argument);
            if (!names.Add(name)) throw new ArgumentException($"tensor '{name}' is listed twice", argument);
            ArgumentNullException.ThrowIfNull(shape, $"shape of tensor '{name}'");
            long count = 1;
            foreach (int dim in shape)
            {
                if (dim < 0) throw new ArgumentException($"tensor '{name}' has a negative dimension in shape {TensorEntry.FormatShape(shape)}", argument);
                count = checked(count * dim);
            }
            counts[i] = count;
        }
        return counts;
    }

    /// <summary>
    /// Writes a file through a temporary file in the same folder that is flushed and then moved over
    /// <paramref name="path"/>; if <paramref name="write"/> or the move fails the temporary file is deleted.
    /// </summary>
    internal static void WriteAtomically(string path, Action<FileStream> write)
    {
        string fullPath = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(fullPath) ?? throw new ArgumentException($"'{path}' has no folder", nameof(path));
        string temporary = Path.Combine(folder, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temporary);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The original error matters more than a temporary file we could not remove.
            }
            throw;
        }
    }

    private static byte[] BuildHeader(List<(string Name, int[] Shape, long Count)> tensors,
        SafetensorsDType dtype, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata.OrderBy(pair => pair.Key, StringComparer.Ordinal))
                {
                    ArgumentNullException.ThrowIfNull(value, $"metadata '{key}'");
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            int size = dtype.SizeOf();
            foreach (var (name, shape, count) in tensors)
            {
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString());
                json.WriteStartArray("shape");
                foreach (int dim in shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += count * size;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    /// <summary>Converts floats to the file's dtype and writes them, in chunks through one scratch buffer.</summary>
    private sealed class ValueWriter(Stream stream, SafetensorsDType dtype)
    {
        private readonly byte[] _scratch = dtype == SafetensorsDType.F32 ? [] : new byte[ChunkElements * 2];

        public void Write(ReadOnlySpan<float> data)
        {
            if (dtype == SafetensorsDType.F32)
            {
                // In chunks: a byte span stops at 2 GiB, and a 7B model's fp32 LM head is 2.2 GB.
                for (int start = 0; start < data.Length; start += ChunkElements)
                    stream.Write(MemoryMarshal.AsBytes(data.Slice(start, Math.Min(ChunkElements, data.Length - start))));
                return;
            }
            var halves = MemoryMarshal.Cast<byte, ushort>(_scratch.AsSpan());
            for (int start = 0; start < data.Length; start += ChunkElements)
            {
                int count = Math.Min(ChunkElements, data.Length - start);
                var chunk = data.Slice(start, count);
                if (dtype == SafetensorsDType.BF16)
                {
                    for (int i = 0; i < count; i++) halves[i] = ((BFloat16)chunk[i]).Bits;
                }
                else
                {
                    for (int i = 0; i < count; i++) halves[i] = BitConverter.HalfToUInt16Bits((Half)chunk[i]);
                }
                stream.Write(_scratch, 0, 2 * count);
            }
        }
    }
}
