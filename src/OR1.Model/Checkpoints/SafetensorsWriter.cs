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
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        if (!dtype.IsReadableAsFloat())
            throw new ArgumentException($"cannot write floats as {dtype}; use F32, BF16 or F16", nameof(dtype));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors writing needs a little-endian host");

        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape, data) in list)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("a tensor has an empty name", nameof(tensors));
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", nameof(tensors));
            if (!names.Add(name)) throw new ArgumentException($"tensor '{name}' is listed twice", nameof(tensors));
            ArgumentNullException.ThrowIfNull(shape, $"shape of tensor '{name}'");
            long count = 1;
            foreach (int dim in shape)
            {
                if (dim < 0) throw new ArgumentException($"tensor '{name}' has a negative dimension in shape {TensorEntry.FormatShape(shape)}", nameof(tensors));
                count *= dim;
                if (count > int.MaxValue) throw new ArgumentException($"tensor '{name}' shape {TensorEntry.FormatShape(shape)} is too large", nameof(tensors));
            }
            if (data.Length != count)
                throw new ArgumentException($"tensor '{name}' has shape {TensorEntry.FormatShape(shape)} ({count} elements), but {data.Length} values", nameof(tensors));
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));

        byte[] header = BuildHeader(list, dtype, metadata);
        WriteAtomically(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            WriteData(stream, list, dtype);
        });
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

    private static byte[] BuildHeader(List<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors,
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
            foreach (var (name, shape, data) in tensors)
            {
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString());
                json.WriteStartArray("shape");
                foreach (int dim in shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += (long)data.Length * size;
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

    private static void WriteData(Stream stream, List<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors, SafetensorsDType dtype)
    {
        var scratch = new byte[ChunkElements * 2];
        foreach (var (_, _, memory) in tensors)
        {
            var data = memory.Span;
            if (dtype == SafetensorsDType.F32)
            {
                // In chunks: a byte span stops at 2 GiB, and a 7B model's fp32 LM head is 2.2 GB.
                for (int start = 0; start < data.Length; start += ChunkElements)
                    stream.Write(MemoryMarshal.AsBytes(data.Slice(start, Math.Min(ChunkElements, data.Length - start))));
                continue;
            }
            var halves = MemoryMarshal.Cast<byte, ushort>(scratch.AsSpan());
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
                stream.Write(scratch, 0, 2 * count);
            }
        }
    }
}
