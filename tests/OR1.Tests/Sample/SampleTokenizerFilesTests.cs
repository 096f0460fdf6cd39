using OR1.Model.Tokenization;
using OR1.Runner.Sample;

namespace OR1.Tests.Sample;

public class SampleTokenizerFilesTests
{
    private string _dir = "";
    private Qwen2Tokenizer _tokenizer = null!;

    [OneTimeSetUp]
    public void WriteAndLoad()
    {
        _dir = Path.Combine(Path.GetTempPath(), "or1-sample-tok-" + Guid.NewGuid().ToString("N"));
        SampleTokenizerFiles.Write(_dir);
        _tokenizer = Qwen2Tokenizer.Load(_dir);
    }

    [OneTimeTearDown]
    public void Cleanup()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Test]
    public void LoadsAsADeepSeekTokenizer()
    {
        Assert.That(File.Exists(Path.Combine(_dir, "tokenizer.json")));
        Assert.That(File.Exists(Path.Combine(_dir, "tokenizer_config.json")));
        Assert.That(_tokenizer.VocabSize, Is.EqualTo(SampleTokenizerFiles.VocabSize).And.EqualTo(267));
        Assert.That(_tokenizer.BosId, Is.EqualTo(SampleTokenizerFiles.BeginOfSentenceId));
        Assert.That(_tokenizer.EosId, Is.EqualTo(SampleTokenizerFiles.EndOfSentenceId));
        Assert.That(_tokenizer.PadId, Is.EqualTo(SampleTokenizerFiles.EndOfSentenceId));
        Assert.That(_tokenizer.AddBosToken, Is.True);
        Assert.That(_tokenizer.Template.Kind, Is.EqualTo(ChatTemplateKind.DeepSeekR1Distill));
        Assert.That(_tokenizer.Template.Source, Is.EqualTo(SampleTokenizerFiles.ChatTemplateJinja), "the template comes from tokenizer_config.json");

        Assert.That(_tokenizer.TokenToId("<｜begin▁of▁sentence｜>"), Is.EqualTo(261));
        Assert.That(_tokenizer.TokenToId("<｜end▁of▁sentence｜>"), Is.EqualTo(262));
        Assert.That(_tokenizer.TokenToId("<｜User｜>"), Is.EqualTo(263));
        Assert.That(_tokenizer.TokenToId("<｜Assistant｜>"), Is.EqualTo(264));
        Assert.That(_tokenizer.TokenToId("<think>"), Is.EqualTo(265));
        Assert.That(_tokenizer.TokenToId("</think>"), Is.EqualTo(266));
        Assert.That(_tokenizer.TokenToId("\\boxed"), Is.EqualTo(SampleTokenizerFiles.BoxedId));

        // DeepSeek's flags: BOS/EOS are special, the turn markers and think tags are not.
        Assert.That(_tokenizer.IsSpecial(261) && _tokenizer.IsSpecial(262));
        Assert.That(new[] { 263, 264, 265, 266 }.Any(_tokenizer.IsSpecial), Is.False);
    }

    [Test]
    public void ByteIdsFollowGpt2Order()
    {
        // Printable ASCII '!'..'~' are ids 0..93; space and newline are remapped bytes at 220 and 198, as in Qwen2.
        Assert.That(SampleTokenizerFiles.ByteId((byte)'!'), Is.EqualTo(0));
        Assert.That(SampleTokenizerFiles.ByteId((byte)'0'), Is.EqualTo(15));
        Assert.That(SampleTokenizerFiles.ByteId((byte)'\n'), Is.EqualTo(198));
        Assert.That(SampleTokenizerFiles.ByteId((byte)' '), Is.EqualTo(220));
        for (int c = '!'; c <= '~'; c++)
        {
            Assert.That(_tokenizer.Encode(((char)c).ToString()), Is.EqualTo(new[] { c - '!' }));
        }
    }

    [Test]
    public void PromptOfOneProblemHasTheseIds()
    {
        var problem = new ArithmeticProblem(1, ArithmeticOperation.Add, 47, 31);
        string prompt = _tokenizer.Template.FormatPrompt(problem.Text);
        Assert.That(prompt, Is.EqualTo("<｜begin▁of▁sentence｜><｜User｜>47+31<｜Assistant｜><think>\n"));
        int Ch(char c) => c - '!';
        Assert.That(_tokenizer.Encode(prompt), Is.EqualTo(new[]
        {
            261, 263, Ch('4'), Ch('7'), Ch('+'), Ch('3'), Ch('1'), 264, 265, 198,
        }));
        Assert.That(_tokenizer.Encode(prompt), Is.EqualTo(new[] { 261, 263, 19, 22, 10, 18, 16, 264, 265, 198 }));

        string solution = ArithmeticTask.WorkedSolution(problem);
        Assert.That(solution, Is.EqualTo("7+1=8\n4+3=7\n</think>\n\\boxed{78}"));
        Assert.That(_tokenizer.Encode(solution), Is.EqualTo(new[]
        {
            Ch('7'), Ch('+'), Ch('1'), Ch('='), Ch('8'), 198,
            Ch('4'), Ch('+'), Ch('3'), Ch('='), Ch('7'), 198,
            266, 198, SampleTokenizerFiles.BoxedId, Ch('{'), Ch('7'), Ch('8'), Ch('}'),
        }));
    }

    [Test]
    public void EveryProblemAndSolutionRoundTrips()
    {
        int checkedCount = 0;
        foreach (int level in ArithmeticTask.Levels)
        {
            foreach (var problem in ArithmeticTask.Generate(level, 250, seed: 21, level % 2 == 0 ? DataSplit.Train : DataSplit.HeldOut))
            {
                string prompt = _tokenizer.Template.FormatPrompt(problem.Text);
                string solution = ArithmeticTask.WorkedSolution(problem);
                var promptIds = _tokenizer.Encode(prompt);
                var solutionIds = _tokenizer.Encode(solution);
                Assert.That(_tokenizer.Decode(promptIds), Is.EqualTo(prompt));
                Assert.That(_tokenizer.Decode(solutionIds), Is.EqualTo(solution));
                Assert.That(_tokenizer.Decode(promptIds.Concat(solutionIds).Append(SampleTokenizerFiles.EndOfSentenceId), skipSpecialTokens: true),
                    Is.EqualTo("<｜User｜>" + problem.Text + "<｜Assistant｜><think>\n" + solution));

                // Character-level apart from the two multi-character tokens: "</think>" (8 chars) and "\boxed" (6).
                Assert.That(solutionIds, Has.Count.EqualTo(solution.Length - 7 - 5), solution);
                Assert.That(promptIds, Has.Count.EqualTo(problem.Text.Length + 5));
                Assert.That(solutionIds.All(id => id < SampleTokenizerFiles.VocabSize));
                checkedCount++;
            }
        }

        Assert.That(checkedCount, Is.EqualTo(1000));
    }

    [Test]
    public void WritingTwiceGivesTheSameFiles()
    {
        string other = Path.Combine(Path.GetTempPath(), "or1-sample-tok-" + Guid.NewGuid().ToString("N"));
        try
        {
            SampleTokenizerFiles.Write(other);
            foreach (string name in new[] { "tokenizer.json", "tokenizer_config.json" })
            {
                Assert.That(File.ReadAllBytes(Path.Combine(other, name)), Is.EqualTo(File.ReadAllBytes(Path.Combine(_dir, name))), name);
            }
        }
        finally
        {
            if (Directory.Exists(other)) Directory.Delete(other, recursive: true);
        }
    }
}
