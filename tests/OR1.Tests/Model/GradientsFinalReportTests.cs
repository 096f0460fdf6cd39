using OR1.Model;
using OR1.Native;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// What the backward reports for the data-parallel sum to start early (<see cref="Qwen2Model.Backward"/>'s
/// <c>gradientsFinalFrom</c>): after the LM head and final norm, after each layer and after the embedding, the flat offset
/// from which it writes no more, on every backend. Each report is checked against the end: the gradients from the
/// reported offset, read at the report, are the final ones bit for bit, and the part between two reports did change
/// after the earlier one's region was reported (so a report that came too early would fail).
/// </summary>
[TestFixtureSource(typeof(BackendCases), nameof(BackendCases.All))]
public sealed class GradientsFinalReportTests(BackendCase backendCase)
{
    private IBackend _backend = null!;

    [OneTimeSetUp]
    public void Create() => _backend = backendCase.CreateOrIgnore();

    [OneTimeTearDown]
    public void Destroy() => _backend?.Dispose();

    [TestCase(false)]
    [TestCase(true)]
    public void EachReportedPartIsFinalWhenReported(bool tied)
    {
        var config = TinyModels.Config(tied, layers: 3);
        using var model = new Qwen2Model(_backend, config);
        model.InitializeRandom(7);
        using var gradients = new Qwen2Weights(_backend, config, flatMultiple: 3 * Qwen2Weights.FlatAlignment);
        // Gradients already there from an earlier micro-batch: the backward adds to them.
        TinyBackward.Run(model, TinyBackward.MicroBatches[0], gradients, seed: 1);
        float[] before = gradients.Flat!.ToFloats();

        var reports = new List<(long Offset, float[] Values)>();
        TinyBackward.Run(model, TinyBackward.MicroBatches[1], gradients, seed: 3,
            offset => reports.Add((offset, gradients.Flat!.ToFloats()[(int)offset..])));
        float[] final = gradients.Flat!.ToFloats();

        long[] expected = [gradients.HeadFlatStart, .. Enumerable.Range(0, config.NumHiddenLayers).Reverse().Select(l => gradients.LayerFlatStart(l)), 0];
        Assert.That(reports.Select(r => r.Offset), Is.EqualTo(expected), "after the head, each layer from the last, and the embedding");
        long end = final.Length;
        foreach (var (offset, values) in reports)
        {
            var changed = 0;
            for (long i = offset; i < end; i++)
                if (BitConverter.SingleToInt32Bits(final[i]) != BitConverter.SingleToInt32Bits(before[i])) changed++;
            Assert.That(changed, Is.GreaterThan(0), $"[{offset}, {end}): the backward changed these gradients (the check can fail)");
            int differing = values.Where((v, i) => BitConverter.SingleToInt32Bits(v) != BitConverter.SingleToInt32Bits(final[offset + i])).Count();
            Assert.That(differing, Is.Zero, $"reported final from {offset}: {differing} of {values.Length} gradients changed afterwards (tied {tied})");
            end = offset;
        }
    }

    [Test]
    public void ReportingNeedsFlatGradients()
    {
        var config = TinyModels.Config(tied: false);
        using var model = new Qwen2Model(_backend, config);
        model.InitializeRandom(7);
        using var gradients = new Qwen2Weights(_backend, config);
        var e = Assert.Throws<ArgumentException>(() => TinyBackward.Run(model, TinyBackward.MicroBatches[0], gradients, seed: 1, _ => { }));
        Assert.That(e!.ParamName, Is.EqualTo("gradients"));
        Assert.That(e.Message, Does.Contain("one flat buffer"));
    }
}
