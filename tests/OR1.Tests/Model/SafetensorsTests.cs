using System.Buffers.Binary;
using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using OR1.Model.Checkpoints;
using OR1.Native;

namespace OR1.Tests.Model;

/// <summary>The safetensors reader against hand-made and Python-made files, the writer, and malformed input.</summary>
public sealed class SafetensorsTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("or1-safetensors-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Writes a safetensors file byte by byte: length prefix (the real one unless overridden), header, data.</summary>
    private static void WriteRaw(string path, string header, byte[] data, ulong? headerLength = null)
    {
        var headerBytes = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + headerBytes.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + headerBytes.Length);
        File.WriteAllBytes(path, bytes);
    }

    private static byte[] LittleEndianFloats(params float[] values)
    {
        var bytes = new byte[4 * values.Length];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        return bytes;
    }

    private static byte[] LittleEndianUInt16s(params ushort[] values)
    {
        var bytes = new byte[2 * values.Length];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), values[i]);
        return bytes;
    }

    /// <summary>Asserts that opening <paramref name="path"/> fails with a message naming the file and every fragment.</summary>
    private static ModelFormatException AssertRejected(string path, params string[] fragments)
    {
        var error = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.That(error.FilePath, Is.EqualTo(path));
        Assert.That(error.Message, Does.StartWith(path + ": "));
        foreach (string fragment in fragments) Assert.That(error.Message, Does.Contain(fragment));
        return error;
    }

    private const string TwoTensorHeader =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";

    [Test]
    public void HandWrittenFileIsReadAsTheSpecSays()
    {
        // Offsets deliberately not in name order, header length not a multiple of 8, metadata, a scalar I64,
        // an empty tensor, and F32 / BF16 / F16 data.
        string header =
            "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hand made\"}," +
            "\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}," +
            "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}," +
            "\"h\":{\"dtype\":\"F16\",\"shape\":[1,3],\"data_offsets\":[22,28]}," +
            "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]}," +
            "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[36,36]}}";
        var data = LittleEndianFloats(1f, -2f, 0.5f, 3.25f)
            .Concat(LittleEndianUInt16s(0x3F80, 0xC000, 0x4049)) // bf16 1, -2, 3.140625
            .Concat(LittleEndianUInt16s(0x3C00, 0xC500, 0x3555)) // f16 1, -5, 0.333251953125
            .Concat(BitConverter.GetBytes(123456789012345L))
            .ToArray();
        string path = PathOf("hand.safetensors");
        WriteRaw(path, header, data);

        using var file = SafetensorsFile.Open(path);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(file.DataOffset, Is.EqualTo(8 + Encoding.UTF8.GetByteCount(header)));
            Assert.That(file.DataLength, Is.EqualTo(36));
            Assert.That(file.Metadata, Is.EqualTo(new Dictionary<string, string> { ["format"] = "pt", ["note"] = "hand made" }));
            Assert.That(file.Tensors.Keys, Is.EquivalentTo(new[] { "w", "a", "h", "step", "empty" }));
            Assert.That(file.Tensors["a"].Shape, Is.EqualTo(new long[] { 2, 2 }));
            Assert.That(file.Tensors["a"].DType, Is.EqualTo(SafetensorsDType.F32));
            Assert.That(file.Tensors["w"].DType, Is.EqualTo(SafetensorsDType.BF16));
            Assert.That(file.Tensors["step"].Shape, Is.Empty);
            Assert.That(file.Tensors["step"].ElementCount, Is.EqualTo(1));
            Assert.That(file.ReadAsFloat32("a"), Is.EqualTo(new[] { 1f, -2f, 0.5f, 3.25f }));
            Assert.That(file.ReadAsFloat32("w"), Is.EqualTo(new[] { 1f, -2f, 3.140625f }));
            Assert.That(file.ReadAsFloat32("h"), Is.EqualTo(new[] { 1f, -5f, 0.333251953125f }));
            Assert.That(file.ReadAsFloat32("empty"), Is.Empty);
        }
        var raw = new byte[8];
        file.ReadBytes("step", raw);
        Assert.That(BitConverter.ToInt64(raw), Is.EqualTo(123456789012345L));
    }

    [Test]
    public void F32RoundTripIsExact()
    {
        var special = new[] { 0f, -0f, 1f, -1f, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-40f };
        var random = TestDataFloats(1000, 7);
        string path = PathOf("f32.safetensors");
        SafetensorsWriter.Write(path, [("special", [3, 4], special), ("random", [10, 10, 10], random)]);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Tensors["random"].Shape, Is.EqualTo(new long[] { 10, 10, 10 }));
        Assert.That(Bits(file.ReadAsFloat32("special")), Is.EqualTo(Bits(special)));
        Assert.That(Bits(file.ReadAsFloat32("random")), Is.EqualTo(Bits(random)));
    }

    [Test]
    public void BF16RoundTripEqualsBFloat16Rounding()
    {
        var values = TestDataFloats(4099, 11).Concat([0f, -0f, 1e-40f, float.PositiveInfinity, float.NaN, 3.14159265f, 65504.7f]).ToArray();
        var expected = values.Select(v => (float)(BFloat16)v).ToArray();
        Assert.That(expected, Is.Not.EqualTo(values), "the test data must need rounding");
        string path = PathOf("bf16.safetensors");
        SafetensorsWriter.Write(path, [("x", [values.Length], values)], SafetensorsDType.BF16);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Tensors["x"].DType, Is.EqualTo(SafetensorsDType.BF16));
        Assert.That(file.Tensors["x"].ByteLength, Is.EqualTo(2L * values.Length));
        Assert.That(Bits(file.ReadAsFloat32("x")), Is.EqualTo(Bits(expected)));
    }

    [Test]
    public void F16RoundTripEqualsHalfRounding()
    {
        var values = TestDataFloats(301, 5, -70000f, 70000f).Concat([1e-6f, 0.1f]).ToArray();
        var expected = values.Select(v => (float)(Half)v).ToArray();
        string path = PathOf("f16.safetensors");
        SafetensorsWriter.Write(path, [("x", [values.Length], values)], SafetensorsDType.F16);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Tensors["x"].DType, Is.EqualTo(SafetensorsDType.F16));
        Assert.That(Bits(file.ReadAsFloat32("x")), Is.EqualTo(Bits(expected)));
    }

    [Test]
    public void WriterHeaderIsAlignedSortedAndContiguous()
    {
        string path = PathOf("layout.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        SafetensorsWriter.Write(path,
        [
            ("zeta", [3], new float[3]),
            ("alpha", [2, 5], new float[10]),
            ("mid.dle", [1], new float[1]),
            ("empty", [0], Array.Empty<float>()),
            ("Beta", [7], new float[7]),
        ], SafetensorsDType.BF16, metadata);

        var bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(headerLength % 8, Is.Zero, "header length must be a multiple of 8");
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.That(header.TrimEnd(' '), Does.EndWith("}"), "padding is spaces after the JSON");

        using var json = JsonDocument.Parse(header);
        var names = json.RootElement.EnumerateObject().Select(p => p.Name).Where(n => n != "__metadata__").ToList();
        Assert.That(names, Is.EqualTo(new[] { "Beta", "alpha", "empty", "mid.dle", "zeta" }), "tensors in ordinal name order");
        Assert.That(json.RootElement.GetProperty("__metadata__").GetProperty("format").GetString(), Is.EqualTo("pt"));
        long expectedBegin = 0;
        foreach (string name in names)
        {
            var entry = json.RootElement.GetProperty(name);
            Assert.That(entry.GetProperty("dtype").GetString(), Is.EqualTo("BF16"));
            long begin = entry.GetProperty("data_offsets")[0].GetInt64();
            long end = entry.GetProperty("data_offsets")[1].GetInt64();
            Assert.That(begin, Is.EqualTo(expectedBegin), $"'{name}' must start where the previous tensor ended");
            long count = entry.GetProperty("shape").EnumerateArray().Aggregate(1L, (p, d) => p * d.GetInt64());
            Assert.That(end - begin, Is.EqualTo(2 * count));
            expectedBegin = end;
        }
        Assert.That(bytes.LongLength, Is.EqualTo(8 + headerLength + expectedBegin), "the data section ends with the last tensor");
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(1), "no temporary file may be left behind");
    }

    [Test]
    public void WriterReplacesAnExistingFile()
    {
        string path = PathOf("x.safetensors");
        SafetensorsWriter.Write(path, [("a", [2], new[] { 1f, 2f })]);
        SafetensorsWriter.Write(path, [("b", [1], new[] { 3f })]);
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Tensors.Keys, Is.EqualTo(new[] { "b" }));
        Assert.That(file.ReadAsFloat32("b"), Is.EqualTo(new[] { 3f }));
    }

    [TestCase("length")]
    [TestCase("duplicate")]
    [TestCase("negative")]
    [TestCase("empty name")]
    [TestCase("reserved")]
    [TestCase("dtype")]
    public void WriterRejectsBadInputAndLeavesTheOldFile(string problem)
    {
        string path = PathOf("x.safetensors");
        SafetensorsWriter.Write(path, [("old", [1], new[] { 9f })]);
        var before = File.ReadAllBytes(path);
        (string, int[], ReadOnlyMemory<float>)[] tensors = problem switch
        {
            "length" => [("a", [2, 3], new float[5])],
            "duplicate" => [("a", [1], new float[1]), ("a", [1], new float[1])],
            "negative" => [("a", [-1], new float[1])],
            "empty name" => [("", [1], new float[1])],
            "reserved" => [("__metadata__", [1], new float[1])],
            _ => [("a", [1], new float[1])],
        };
        var dtype = problem == "dtype" ? SafetensorsDType.I32 : SafetensorsDType.F32;
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, tensors, dtype));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(1), "no temporary file may be left behind");
    }

    [Test]
    public void FailedMoveLeavesNoPartialFile()
    {
        // The destination is a directory, so the final move fails after the data was written.
        string path = PathOf("occupied");
        Directory.CreateDirectory(path);
        Assert.That(() => SafetensorsWriter.Write(path, [("a", [4], new float[4])]), Throws.InstanceOf<IOException>().Or.InstanceOf<UnauthorizedAccessException>());
        Assert.That(Directory.GetFileSystemEntries(_dir), Is.EqualTo(new[] { path }), "only the pre-existing directory remains");
    }

    /// <summary>
    /// The streaming writer (each tensor's values given in pieces as the file is written, how a checkpoint of a model larger
    /// than memory is saved) asks for the tensors in its data order and writes the bytes of the writer given whole arrays,
    /// in every dtype, whatever the pieces (empty ones included).
    /// </summary>
    [TestCase(SafetensorsDType.F32)]
    [TestCase(SafetensorsDType.BF16)]
    [TestCase(SafetensorsDType.F16)]
    public void StreamedTensorsAreTheFileOfWholeArrays(SafetensorsDType dtype)
    {
        (string Name, int[] Shape, float[] Data)[] tensors =
        [
            ("zeta", [3, 70_001], TestDataFloats(3 * 70_001, 1)),
            ("alpha", [5], TestDataFloats(5, 2)),
            ("empty", [0, 4], []),
            ("mid", [17, 3], TestDataFloats(51, 3)),
        ];
        string whole = PathOf("whole.safetensors"), streamed = PathOf("streamed.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        SafetensorsWriter.Write(whole, tensors.Select(t => (t.Name, t.Shape, (ReadOnlyMemory<float>)t.Data)), dtype, metadata);
        var asked = new List<string>();
        SafetensorsWriter.Write(streamed, tensors.Select(t => (t.Name, t.Shape)).ToArray(), (name, sink) =>
        {
            asked.Add(name);
            var data = tensors.Single(t => t.Name == name).Data;
            // Pieces of 1, 0, 7, 0, 13, ... elements: each ends somewhere new, an empty one between.
            for (int at = 0, step = 1; at < data.Length; step = step * 7 % 9973 + 1)
            {
                int count = Math.Min(step, data.Length - at);
                sink(data.AsSpan(at, count));
                sink([]);
                at += count;
            }
        }, dtype, metadata);
        Assert.That(asked, Is.EqualTo(SafetensorsWriter.DataOrder(tensors.Select(t => t.Name))));
        Assert.That(asked, Is.EqualTo(new[] { "alpha", "empty", "mid", "zeta" }));
        Assert.That(File.ReadAllBytes(streamed), Is.EqualTo(File.ReadAllBytes(whole)));
    }

    /// <summary>A producer that gives a tensor fewer or more values than its shape holds: an error naming the tensor and both counts, and no file.</summary>
    [TestCase(5, "but 5 were given")]
    [TestCase(7, "but more were given (7)")]
    public void AStreamedTensorOfTheWrongLengthLeavesNoFile(int given, string problem)
    {
        string path = PathOf("short.safetensors");
        var error = Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [("a", [2]), ("b", [2, 3])], (name, sink) =>
        {
            sink(new float[name == "a" ? 2 : 4]);
            if (name == "b") sink(new float[given - 4]);
        }))!;
        Assert.That(error.Message, Does.Contain("tensor 'b'").And.Contain("[2, 3]").And.Contain("holds 6 values").And.Contain(problem));
        Assert.That(Directory.GetFileSystemEntries(_dir), Is.Empty, "neither the file nor a temporary file is left");
    }

    /// <summary>A range of a tensor (a rank's slice of a moment), in every dtype: the elements of the whole tensor read; a range outside it is refused naming the tensor.</summary>
    [TestCase(SafetensorsDType.F32)]
    [TestCase(SafetensorsDType.BF16)]
    [TestCase(SafetensorsDType.F16)]
    public void ARangeOfATensorIsThoseElementsOfTheWhole(SafetensorsDType dtype)
    {
        var values = TestDataFloats(3_000_001, 4);
        string path = PathOf("range.safetensors");
        SafetensorsWriter.Write(path, [("pad", [3], new float[3]), ("x", [values.Length], values)], dtype);
        using var file = SafetensorsFile.Open(path);
        float[] whole = file.ReadAsFloat32("x");
        foreach (var (start, count) in new[] { (0L, 1), (1L, 2_000_000), (2_999_000L, 1001), (values.Length, 0) })
        {
            var part = new float[count];
            file.ReadAsFloat32("x", start, part);
            Assert.That(Bits(part), Is.EqualTo(Bits(whole.AsSpan((int)start, count).ToArray())), $"elements [{start}, {start + count})");
        }
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => file.ReadAsFloat32("x", 2_999_999, new float[3]))!;
        Assert.That(error.Message, Does.Contain("tensor 'x'").And.Contain("[2999999, 3000002)").And.Contain("3000001"));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReadAsFloat32("x", -1, new float[1]));
    }

    [TestCase(0)]
    [TestCase(5)]
    public void TruncatedFileIsReported(int length)
    {
        string path = PathOf("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        AssertRejected(path, $"{length} bytes", "shorter than the 8-byte header length");
    }

    [Test]
    public void HeaderLengthBeyondTheFileIsReported()
    {
        string path = PathOf("long-header.safetensors");
        WriteRaw(path, TwoTensorHeader, new byte[16], headerLength: 4096);
        AssertRejected(path, "header length 4096", "runs past the end of the file");
    }

    [Test]
    public void HugeHeaderLengthIsReported()
    {
        string path = PathOf("huge-header.safetensors");
        WriteRaw(path, TwoTensorHeader, new byte[16], headerLength: ulong.MaxValue);
        AssertRejected(path, $"header length {ulong.MaxValue}", "runs past the end of the file");
    }

    [Test]
    public void HeaderThatIsNotJsonIsReported()
    {
        string path = PathOf("not-json.safetensors");
        WriteRaw(path, "PK\u0003\u0004 this is a zip file", new byte[16]);
        AssertRejected(path, "header", "not valid JSON");
    }

    [Test]
    public void HeaderThatIsNotAnObjectIsReported()
    {
        string path = PathOf("array.safetensors");
        WriteRaw(path, "[1, 2, 3]", []);
        AssertRejected(path, "header must be a JSON object", "array");
    }

    [TestCase("dtype", "{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}")]
    [TestCase("shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}")]
    [TestCase("data_offsets", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}")]
    public void TensorMissingAFieldIsReported(string field, string header)
    {
        string path = PathOf("missing-field.safetensors");
        WriteRaw(path, header, new byte[8]);
        AssertRejected(path, "tensor 'x'", $"missing field '{field}'");
    }

    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "'shape'")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", "'shape'")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "'data_offsets'")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "end before they begin")]
    [TestCase("{\"x\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", "'dtype'")]
    [TestCase("{\"x\":[1,2]}", "must be a JSON object")]
    public void TensorWithAMistypedFieldIsReported(string header, string problem)
    {
        string path = PathOf("mistyped.safetensors");
        WriteRaw(path, header, new byte[8]);
        AssertRejected(path, "tensor 'x'", problem);
    }

    [Test]
    public void UnknownDTypeIsReported()
    {
        string path = PathOf("q4.safetensors");
        WriteRaw(path, "{\"x\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[8]);
        AssertRejected(path, "tensor 'x'", "unknown dtype 'Q4_K'");
    }

    [Test]
    public void OverlappingRangesAreReported()
    {
        string path = PathOf("overlap.safetensors");
        WriteRaw(path,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
            new byte[16]);
        AssertRejected(path, "tensor 'b'", "overlaps tensor 'a'", "[8, 16)", "[0, 12)");
    }

    [Test]
    public void RangeRunningPastTheDataIsReported()
    {
        string path = PathOf("past.safetensors");
        WriteRaw(path, TwoTensorHeader, new byte[12]);
        AssertRejected(path, "tensor 'b'", "[8, 16]", "run past the end of the data section (12 bytes)");
    }

    [Test]
    public void RangeNotMatchingTheShapeIsReported()
    {
        string path = PathOf("mismatch.safetensors");
        WriteRaw(path, "{\"x\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", new byte[24]);
        AssertRejected(path, "tensor 'x'", "24 bytes", "shape [2, 3] of BF16 needs 12 bytes");
    }

    [Test]
    public void DuplicateTensorIsReported()
    {
        string path = PathOf("duplicate.safetensors");
        WriteRaw(path,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
            new byte[16]);
        AssertRejected(path, "tensor 'a' twice");
    }

    [Test]
    public void NonStringMetadataIsReported()
    {
        string path = PathOf("metadata.safetensors");
        WriteRaw(path, "{\"__metadata__\":{\"step\":12}}", []);
        AssertRejected(path, "'__metadata__'", "'step'", "must be a string");
    }

    [Test]
    public void MissingFileIsReported()
    {
        string path = PathOf("absent.safetensors");
        AssertRejected(path, "not found");
    }

    [Test]
    public void ReadingAnIntegerTensorAsFloatsIsReported()
    {
        string path = PathOf("ints.safetensors");
        WriteRaw(path, "{\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[8]);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<ModelFormatException>(() => file.ReadAsFloat32("ids", new float[2]));
        Assert.That(error.Message, Does.StartWith(path + ": ").And.Contain("'ids'").And.Contain("I32"));
    }

    [Test]
    public void ReadingAnUnknownTensorIsReported()
    {
        string path = PathOf("x.safetensors");
        SafetensorsWriter.Write(path, [("a", [1], new[] { 1f })]);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<ModelFormatException>(() => file.ReadAsFloat32("b"));
        Assert.That(error.Message, Does.StartWith(path + ": ").And.Contain("no tensor named 'b'"));
    }

    [Test]
    public void DestinationOfTheWrongLengthIsRejected()
    {
        string path = PathOf("x.safetensors");
        SafetensorsWriter.Write(path, [("a", [2, 2], new float[4])]);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<ArgumentException>(() => file.ReadAsFloat32("a", new float[3]));
        Assert.That(error.Message, Does.Contain("4 elements"));
    }

    [Test]
    public void ReadingAfterDisposeThrows()
    {
        string path = PathOf("x.safetensors");
        SafetensorsWriter.Write(path, [("a", [1], new[] { 1f })]);
        var file = SafetensorsFile.Open(path);
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadAsFloat32("a", new float[1]));
    }

    /// <summary>
    /// A file written exactly as the Python safetensors library does (struct + json: compact JSON, "__metadata__" first
    /// with format=pt, tensors sorted by dtype alignment then name, header padded with spaces to 8 bytes) reads back.
    /// </summary>
    [Test]
    public void FileWrittenLikeThePythonLibraryIsReadable()
    {
        const string script = """
            import json, struct, sys

            def bf16_bits(x):
                bits = struct.unpack('<I', struct.pack('<f', x))[0]
                return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF

            embed = [0.1, -0.2, 0.3, 1.5, -2.25, 1e-3]
            head = [0.1, -1.0 / 3.0, 2.0, 1e30]
            norm = [1.0, -0.5, 65504.0]
            tensors = {
                'model.embed_tokens.weight': ('F32', [2, 3], struct.pack('<6f', *embed)),
                'lm_head.weight': ('BF16', [2, 2], struct.pack('<4H', *[bf16_bits(x) for x in head])),
                'model.norm.weight': ('F16', [3], struct.pack('<3e', *norm)),
                'position_ids': ('I64', [1, 4], struct.pack('<4q', 0, 1, 2, 3)),
            }
            # safetensors' serialize orders by dtype (descending) and then by name
            rank = {'F16': 7, 'BF16': 8, 'F32': 11, 'I64': 13}
            order = sorted(tensors, key=lambda n: (-rank[tensors[n][0]], n))
            header = {'__metadata__': {'format': 'pt'}}
            offset = 0
            for name in order:
                dtype, shape, data = tensors[name]
                header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + len(data)]}
                offset += len(data)
            text = json.dumps(header, separators=(',', ':')).encode('utf-8')
            text += b' ' * ((8 - len(text) % 8) % 8)
            with open(sys.argv[1], 'wb') as f:
                f.write(struct.pack('<Q', len(text)))
                f.write(text)
                for name in order:
                    f.write(tensors[name][2])
            """;
        string scriptPath = PathOf("write_safetensors.py");
        File.WriteAllText(scriptPath, script);
        string path = PathOf("python.safetensors");
        RunPython(scriptPath, path);

        using var file = SafetensorsFile.Open(path);
        float[] head = [0.1f, -1f / 3f, 2f, 1e30f];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
            Assert.That(file.DataOffset % 8, Is.Zero);
            Assert.That(file.Tensors["position_ids"].DType, Is.EqualTo(SafetensorsDType.I64));
            Assert.That(file.Tensors["model.embed_tokens.weight"].Shape, Is.EqualTo(new long[] { 2, 3 }));
            Assert.That(file.ReadAsFloat32("model.embed_tokens.weight"), Is.EqualTo(new[] { 0.1f, -0.2f, 0.3f, 1.5f, -2.25f, 1e-3f }));
            Assert.That(file.ReadAsFloat32("lm_head.weight"), Is.EqualTo(head.Select(v => (float)(BFloat16)v).ToArray()));
            Assert.That(file.ReadAsFloat32("model.norm.weight"), Is.EqualTo(new[] { 1f, -0.5f, 65504f }));
        }
    }

    /// <summary>
    /// Our writer's output passes the checks the safetensors library makes when it opens a file (header starts with '{',
    /// tensors sorted by offset are contiguous from 0 and end exactly at the end of the file, byte lengths match shapes),
    /// re-implemented in Python, and Python decodes the same values.
    /// </summary>
    [TestCase(SafetensorsDType.F32)]
    [TestCase(SafetensorsDType.BF16)]
    [TestCase(SafetensorsDType.F16)]
    public void WriterOutputPassesThePythonLibrarysChecks(SafetensorsDType dtype)
    {
        const string script = """
            import json, struct, sys
            data = open(sys.argv[1], 'rb').read()
            n = struct.unpack('<Q', data[:8])[0]
            assert n <= 100_000_000 and 8 + n <= len(data), 'HeaderTooLarge / InvalidHeaderLength'
            text = data[8:8 + n].decode('utf-8')
            assert text.startswith('{'), 'InvalidHeaderStart'
            header = json.loads(text)
            metadata = header.pop('__metadata__', None)
            sizes = {'F32': 4, 'BF16': 2, 'F16': 2}
            start = 0
            for name, info in sorted(header.items(), key=lambda item: item[1]['data_offsets']):
                s, e = info['data_offsets']
                assert s == start and e >= s, 'InvalidOffset ' + name
                count = 1
                for d in info['shape']:
                    count *= d
                assert e - s == count * sizes[info['dtype']], 'TensorInvalidInfo ' + name
                start = e
            assert 8 + n + start == len(data), 'MetadataIncompleteBuffer'
            body = data[8 + n:]
            out = {'__metadata__': metadata}
            for name, info in header.items():
                s, e = info['data_offsets']
                raw = body[s:e]
                if info['dtype'] == 'F32':
                    values = list(struct.unpack('<%df' % ((e - s) // 4), raw))
                elif info['dtype'] == 'F16':
                    values = list(struct.unpack('<%de' % ((e - s) // 2), raw))
                else:
                    values = [struct.unpack('<f', struct.pack('<I', b << 16))[0] for b in struct.unpack('<%dH' % ((e - s) // 2), raw)]
                out[name] = {'dtype': info['dtype'], 'shape': info['shape'], 'values': values}
            print(json.dumps(out))
            """;
        string scriptPath = PathOf("check_safetensors.py");
        File.WriteAllText(scriptPath, script);
        string path = PathOf("ours.safetensors");
        var a = TestDataFloats(15, 3);
        var b = TestDataFloats(7, 4);
        SafetensorsWriter.Write(path, [("b.weight", [7], b), ("a.weight", [3, 5], a), ("c.empty", [0, 3], Array.Empty<float>())], dtype,
            new Dictionary<string, string> { ["format"] = "pt" });

        using var result = JsonDocument.Parse(RunPython(scriptPath, path));
        var root = result.RootElement;
        Func<float, float> round = dtype switch
        {
            SafetensorsDType.BF16 => v => (float)(BFloat16)v,
            SafetensorsDType.F16 => v => (float)(Half)v,
            _ => v => v,
        };
        using (Assert.EnterMultipleScope())
        {
            Assert.That(root.GetProperty("__metadata__").GetProperty("format").GetString(), Is.EqualTo("pt"));
            Assert.That(root.GetProperty("a.weight").GetProperty("dtype").GetString(), Is.EqualTo(dtype.ToString()));
            Assert.That(root.GetProperty("a.weight").GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()), Is.EqualTo(new[] { 3, 5 }));
            Assert.That(root.GetProperty("a.weight").GetProperty("values").EnumerateArray().Select(v => (float)v.GetDouble()), Is.EqualTo(a.Select(round)));
            Assert.That(root.GetProperty("b.weight").GetProperty("values").EnumerateArray().Select(v => (float)v.GetDouble()), Is.EqualTo(b.Select(round)));
            Assert.That(root.GetProperty("c.empty").GetProperty("values").GetArrayLength(), Is.Zero);
        }
    }

    /// <summary>Runs a Python script with one argument and returns its standard output; ignores the test where python3 is absent.</summary>
    private static string RunPython(string scriptPath, string argument)
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(scriptPath);
        start.ArgumentList.Add(argument);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("python3 did not start");
        }
        catch (Win32Exception)
        {
            Assert.Ignore("python3 is not installed, so the check against a Python implementation of the format cannot run");
            return "";
        }
        using (process)
        {
            var stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.That(process.ExitCode, Is.Zero, $"python3 failed: {stderr.Result}");
            return stdout;
        }
    }

    private static float[] TestDataFloats(int n, int seed, float lo = -3f, float hi = 3f)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(lo + (hi - lo) * random.NextDouble())).ToArray();
    }

    private static uint[] Bits(float[] values) => values.Select(BitConverter.SingleToUInt32Bits).ToArray();
}
