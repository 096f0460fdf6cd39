using System.Globalization;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Rewards.Math;
using OR1.Runner.Sample;

namespace OR1.Tests.Sample;

public class ArithmeticTaskTests
{
    private static readonly int[] Levels = [1, 2, 3, 4];

    [Test]
    public void SameSeedGivesSameProblems()
    {
        foreach (int level in Levels)
        {
            var first = ArithmeticTask.Generate(level, 200, seed: 7, DataSplit.Train).Select(p => p.Text).ToArray();
            var second = ArithmeticTask.Generate(level, 200, seed: 7, DataSplit.Train).Select(p => p.Text).ToArray();
            var other = ArithmeticTask.Generate(level, 200, seed: 8, DataSplit.Train).Select(p => p.Text).ToArray();
            Assert.That(second, Is.EqualTo(first), $"level {level}");
            Assert.That(other, Is.Not.EqualTo(first), $"level {level}: another seed gives other problems");
        }
    }

    [Test]
    public void AskingForMoreExtendsTheSameList()
    {
        var few = ArithmeticTask.Generate(2, 50, seed: 3, DataSplit.HeldOut);
        var many = ArithmeticTask.Generate(2, 500, seed: 3, DataSplit.HeldOut);
        Assert.That(many.Take(50).Select(p => p.Text), Is.EqualTo(few.Select(p => p.Text)));
    }

    // Pinned: a change here changes every sample run's data (and its published numbers).
    [TestCase(1, DataSplit.Train, "66+3")]
    [TestCase(2, DataSplit.Train, "48+9")]
    [TestCase(3, DataSplit.Train, "121-52")]
    [TestCase(4, DataSplit.Train, "14+88-32")]
    [TestCase(1, DataSplit.HeldOut, "6+71")]
    [TestCase(2, DataSplit.HeldOut, "88+9")]
    [TestCase(3, DataSplit.HeldOut, "14*7")]
    [TestCase(4, DataSplit.HeldOut, "83+62-79")]
    public void FirstProblemOfSeedOneIsPinned(int level, DataSplit split, string expected)
    {
        var problem = ArithmeticTask.Generate(level, 1, seed: 1, split)[0];
        Assert.That(problem.Text, Is.EqualTo(expected));
        Assert.That(problem.Level, Is.EqualTo(level));
    }

    [Test]
    public void ProblemsAreDistinctAndOnTheirSplit()
    {
        foreach (int level in Levels)
        {
            foreach (DataSplit split in new[] { DataSplit.Train, DataSplit.HeldOut })
            {
                var problems = ArithmeticTask.Generate(level, 1000, seed: 11, split);
                Assert.That(problems, Has.Count.EqualTo(1000));
                Assert.That(problems.Select(p => p.Text).Distinct().Count(), Is.EqualTo(1000), $"level {level} {split}: distinct");
                Assert.That(problems.All(p => p.Split == split && ArithmeticTask.SplitOf(p.Text) == split), $"level {level} {split}");
                Assert.That(problems.All(p => p.Level == level));
            }
        }
    }

    [Test]
    public void TrainAndHeldOutNeverShareAProblem()
    {
        foreach (int level in Levels)
        {
            var train = new HashSet<string>();
            foreach (long seed in new long[] { 1, 2, 3 })
            {
                train.UnionWith(ArithmeticTask.Generate(level, 1000, seed, DataSplit.Train).Select(p => p.Text));
            }

            var heldOut = ArithmeticTask.Generate(level, 1000, seed: 1, DataSplit.HeldOut).Select(p => p.Text);
            Assert.That(heldOut.Where(train.Contains), Is.Empty, $"level {level}");
        }
    }

    [Test]
    public void LevelsNeverShareAProblem()
    {
        var levelOf = new Dictionary<string, int>();
        foreach (int level in Levels)
        {
            foreach (var problem in ArithmeticTask.Generate(level, 3000, seed: 5, DataSplit.Train))
            {
                Assert.That(levelOf.TryAdd(problem.Text, level), $"{problem.Text} is in level {level} and {levelOf.GetValueOrDefault(problem.Text)}");
            }
        }
    }

    [Test]
    public void HeldOutShareIsAboutTwentyPercent()
    {
        // Over every two-digit addition text, the hash split holds out close to HeldOutPercent of them.
        int heldOut = 0, total = 0;
        for (int a = 10; a < 100; a++)
        {
            for (int b = 10; b < 100; b++)
            {
                total++;
                if (ArithmeticTask.SplitOf($"{a}+{b}") == DataSplit.HeldOut) heldOut++;
            }
        }

        Assert.That((double)heldOut / total, Is.EqualTo(ArithmeticTask.HeldOutPercent / 100.0).Within(0.02));
    }

    [Test]
    public void SplitUsesFnv1a()
    {
        // Published FNV-1a 64 test vectors.
        Assert.That(ArithmeticTask.Fnv1a64(""), Is.EqualTo(0xcbf29ce484222325UL));
        Assert.That(ArithmeticTask.Fnv1a64("a"), Is.EqualTo(0xaf63dc4c8601ec8cUL));
        Assert.That(ArithmeticTask.Fnv1a64("foobar"), Is.EqualTo(0x85944171f73967e8UL));
    }

    [Test]
    public void AnswersMatchAnIndependentEvaluation()
    {
        foreach (int level in Levels)
        {
            foreach (var problem in ArithmeticTask.Generate(level, 2000, seed: 2, DataSplit.Train))
            {
                long expected = Evaluate(problem.Text);
                Assert.That(expected, Is.GreaterThanOrEqualTo(0), problem.Text);
                Assert.That(problem.AnswerText, Is.EqualTo(expected.ToString(CultureInfo.InvariantCulture)), problem.Text);
            }
        }
    }

    [Test]
    public void LevelsHaveTheirShape()
    {
        foreach (var p in ArithmeticTask.Generate(1, 1000, seed: 4, DataSplit.Train))
        {
            Assert.That(p.Operation, Is.AnyOf(ArithmeticOperation.Add, ArithmeticOperation.Subtract), p.Text);
            Assert.That(Math.Max(p.A, p.B), Is.LessThan(100), p.Text);
            Assert.That(ColumnCarries(p), Is.Zero, p.Text);
        }

        foreach (var p in ArithmeticTask.Generate(2, 1000, seed: 4, DataSplit.Train))
        {
            Assert.That(p.Operation, Is.AnyOf(ArithmeticOperation.Add, ArithmeticOperation.Subtract), p.Text);
            Assert.That(p.A, Is.InRange(10, 999), p.Text);
            Assert.That(ColumnCarries(p), Is.EqualTo(1), p.Text);
        }

        var level3 = ArithmeticTask.Generate(3, 1000, seed: 4, DataSplit.Train);
        foreach (var p in level3)
        {
            if (p.Operation == ArithmeticOperation.Multiply)
            {
                Assert.That(p.A, Is.InRange(10, 99), p.Text);
                Assert.That(p.B, Is.InRange(2, 9), p.Text);
            }
            else
            {
                Assert.That(p.A, Is.InRange(100, 999), p.Text);
                Assert.That(ColumnCarries(p), Is.GreaterThanOrEqualTo(2), p.Text);
            }
        }

        Assert.That(level3.Count(p => p.Operation == ArithmeticOperation.Multiply), Is.InRange(400, 600));
        foreach (var p in ArithmeticTask.Generate(4, 1000, seed: 4, DataSplit.Train))
        {
            Assert.That(p.Operation, Is.EqualTo(ArithmeticOperation.AddThenSubtract));
            Assert.That(new[] { p.A, p.B, p.C }, Is.All.InRange(10, 99), p.Text);
        }
    }

    [Test]
    public void WorkedSolutionsAreTrueLinesThenTheBoxedAnswer()
    {
        foreach (int level in Levels)
        {
            foreach (var problem in ArithmeticTask.Generate(level, 1000, seed: 9, DataSplit.Train))
            {
                string solution = ArithmeticTask.WorkedSolution(problem);
                Assert.That(solution, Does.EndWith("</think>\n\\boxed{" + problem.AnswerText + "}"), problem.Text);
                Assert.That(solution.Split("</think>"), Has.Length.EqualTo(2), problem.Text);
                string[] lines = solution[..solution.IndexOf("</think>", StringComparison.Ordinal)].Split('\n');
                Assert.That(lines[^1], Is.Empty, "the thinking ends with a newline");
                foreach (string line in lines[..^1])
                {
                    int eq = line.IndexOf('=');
                    if (eq < 0)
                    {
                        // The two-step header: the sum of the first step minus the third operand.
                        Assert.That(problem.Operation, Is.EqualTo(ArithmeticOperation.AddThenSubtract), line);
                        Assert.That(line, Is.EqualTo($"{problem.A + problem.B}-{problem.C}"));
                        continue;
                    }

                    Assert.That(EvaluateLeftToRight(line[..eq]), Is.EqualTo(long.Parse(line[(eq + 1)..], CultureInfo.InvariantCulture)), $"{problem.Text}: {line}");
                }

                int columns = problem.Operation switch
                {
                    ArithmeticOperation.AddThenSubtract => 2 + (problem.A + problem.B).ToString(CultureInfo.InvariantCulture).Length + 1,
                    ArithmeticOperation.Subtract => problem.A.ToString(CultureInfo.InvariantCulture).Length,
                    _ => Math.Max(problem.A, problem.B).ToString(CultureInfo.InvariantCulture).Length,
                };
                Assert.That(lines.Length - 1, Is.EqualTo(columns), $"{problem.Text}: one line per column");
            }
        }
    }

    [TestCase("478+56", "8+6=14\n7+5+1=13\n4+0+1=5\n</think>\n\\boxed{534}")]
    [TestCase("345-78", "15-8=7\n14-7-1=6\n3-0-1=2\n</think>\n\\boxed{267}")]
    [TestCase("47*6", "7*6=42\n4*6+4=28\n</think>\n\\boxed{282}")]
    [TestCase("47+38-29", "7+8=15\n4+3+1=8\n85-29\n15-9=6\n8-2-1=5\n</think>\n\\boxed{56}")]
    [TestCase("42+35", "2+5=7\n4+3=7\n</think>\n\\boxed{77}")]
    public void WorkedSolutionFormat(string text, string expected)
    {
        Assert.That(ArithmeticTask.WorkedSolution(Parse(text)), Is.EqualTo(expected));
    }

    [TestCase(1, 24, 31)]
    [TestCase(2, 30, 45)]
    [TestCase(3, 30, 50)]
    [TestCase(4, 45, 90)]
    public void SolutionLengthsStayWithinTheLevelsBounds(int level, int min, int max)
    {
        var lengths = ArithmeticTask.Generate(level, 2000, seed: 6, DataSplit.Train)
            .Select(p => ArithmeticTask.WorkedSolution(p).Length).ToArray();
        Assert.That(lengths.Min(), Is.GreaterThanOrEqualTo(min));
        Assert.That(lengths.Max(), Is.LessThanOrEqualTo(max));
    }

    [Test]
    public void WorkedSolutionsScoreOneAndWrongAnswersZero()
    {
        var reward = new MathReward();
        var router = new RewardRouter([reward]);
        foreach (int level in Levels)
        {
            foreach (var problem in ArithmeticTask.Generate(level, 100, seed: 12, DataSplit.HeldOut))
            {
                RlExample example = ArithmeticTask.ToExample(problem);
                string solution = ArithmeticTask.WorkedSolution(problem);
                Assert.That(reward.Score(RewardRouter.AnswerPart(solution), example.GroundTruth, CancellationToken.None).Score, Is.EqualTo(1.0), solution);
                Assert.That(router.Score(solution, example.GroundTruth, truncated: false).Score, Is.EqualTo(1.0), solution);

                string wrong = solution.Replace("\\boxed{" + problem.AnswerText + "}", "\\boxed{" + (problem.Answer + 1).ToString(CultureInfo.InvariantCulture) + "}", StringComparison.Ordinal);
                Assert.That(wrong, Is.Not.EqualTo(solution));
                Assert.That(router.Score(wrong, example.GroundTruth, truncated: false).Score, Is.Zero, wrong);
                Assert.That(router.Score(solution, example.GroundTruth, truncated: true).Score, Is.Zero, "truncated");
            }
        }
    }

    [Test]
    public void ExamplesFollowTheSkyworkSchema()
    {
        var problem = Parse("47+38-29");
        RlExample example = ArithmeticTask.ToExample(problem);
        Assert.That(example.DataSource, Is.EqualTo("arith-level4"));
        Assert.That(example.Ability, Is.EqualTo("math"));
        Assert.That(example.Prompt, Has.Count.EqualTo(1));
        Assert.That(example.Prompt[0], Is.EqualTo(new PromptMessage("user", "47+38-29")));
        Assert.That(((MathGroundTruth)example.GroundTruth).Answers, Is.EqualTo(new[] { "56" }));
        Assert.That(example.Index, Is.EqualTo(4047038029L));
        Assert.That(example.Id, Is.EqualTo("arith-level4/4047038029"));
        Assert.That(example.Split, Is.EqualTo(problem.Split == DataSplit.HeldOut ? "test" : "train"));
        Assert.That(ArithmeticTask.ToJsonLine(problem), Is.EqualTo(
            "{\"data_source\":\"arith-level4\",\"prompt\":[{\"role\":\"user\",\"content\":\"47+38-29\"}],\"ability\":\"math\","
            + "\"reward_model\":{\"ground_truth\":\"[\\\"56\\\"]\",\"style\":\"rule\"},"
            + $"\"extra_info\":{{\"index\":4047038029,\"level\":4,\"split\":\"{example.Split}\"}}}}"));
    }

    [Test]
    public void JsonlFileReadsBackThroughTheDatasetReader()
    {
        string dir = Path.Combine(Path.GetTempPath(), "or1-arith-" + Guid.NewGuid().ToString("N"));
        try
        {
            var problems = Levels.SelectMany(level => ArithmeticTask.Generate(level, 50, seed: 1, DataSplit.HeldOut)).ToList();
            string path = Path.Combine(dir, "sub", "heldout.jsonl");
            Assert.That(ArithmeticTask.WriteJsonl(path, problems), Is.EqualTo(problems.Count));

            var report = new DataLoadReport();
            var examples = DatasetReader.Read(path, report);
            var expected = ArithmeticTask.ToExamples(problems);
            Assert.That(examples, Has.Count.EqualTo(problems.Count));
            for (int i = 0; i < examples.Count; i++)
            {
                Assert.That(examples[i].Id, Is.EqualTo(expected[i].Id));
                Assert.That(examples[i].ProblemText, Is.EqualTo(problems[i].Text));
                Assert.That(examples[i].Split, Is.EqualTo("test"));
                Assert.That(((MathGroundTruth)examples[i].GroundTruth).Answers, Is.EqualTo(new[] { problems[i].AnswerText }));
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void BadArgumentsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ArithmeticTask.Generate(0, 1, 1, DataSplit.Train));
        Assert.Throws<ArgumentOutOfRangeException>(() => ArithmeticTask.Generate(5, 1, 1, DataSplit.Train));
        Assert.Throws<ArgumentOutOfRangeException>(() => ArithmeticTask.Generate(1, -1, 1, DataSplit.Train));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ArithmeticProblem(1, ArithmeticOperation.Subtract, 3, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ArithmeticProblem(3, ArithmeticOperation.Multiply, 123, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ArithmeticProblem(4, ArithmeticOperation.AddThenSubtract, 10, 10, 30));
        Assert.That(ArithmeticTask.Generate(1, 0, 1, DataSplit.Train), Is.Empty);
    }

    [Test]
    public void AnExhaustedLevelSaysSoInsteadOfLooping()
    {
        var e = Assert.Throws<InvalidOperationException>(() => ArithmeticTask.Generate(1, 5000, seed: 1, DataSplit.HeldOut));
        Assert.That(e!.Message, Does.Contain("level 1"));
    }

    /// <summary>Builds a problem from its text (test helper; the level is the one the generator would give).</summary>
    private static ArithmeticProblem Parse(string text)
    {
        string[] plus = text.Split('+');
        if (text.Contains('*'))
        {
            string[] parts = text.Split('*');
            return new ArithmeticProblem(3, ArithmeticOperation.Multiply, int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture));
        }

        if (plus.Length == 2 && plus[1].Contains('-'))
        {
            string[] rest = plus[1].Split('-');
            return new ArithmeticProblem(4, ArithmeticOperation.AddThenSubtract, int.Parse(plus[0], CultureInfo.InvariantCulture), int.Parse(rest[0], CultureInfo.InvariantCulture), int.Parse(rest[1], CultureInfo.InvariantCulture));
        }

        if (plus.Length == 2)
        {
            return new ArithmeticProblem(2, ArithmeticOperation.Add, int.Parse(plus[0], CultureInfo.InvariantCulture), int.Parse(plus[1], CultureInfo.InvariantCulture));
        }

        string[] minus = text.Split('-');
        return new ArithmeticProblem(2, ArithmeticOperation.Subtract, int.Parse(minus[0], CultureInfo.InvariantCulture), int.Parse(minus[1], CultureInfo.InvariantCulture));
    }

    /// <summary>Evaluates "a+b", "a-b", "a*b", "a+b-c" with ordinary precedence (only * binds tighter).</summary>
    private static long Evaluate(string text)
    {
        long total = 0;
        var terms = SplitKeeping(text, "+-", out var operators);
        for (int i = 0; i < terms.Count; i++)
        {
            int sign = i == 0 || operators[i - 1] == '+' ? 1 : -1;
            long product = 1;
            foreach (string factor in terms[i].Split('*'))
            {
                product *= long.Parse(factor, CultureInfo.InvariantCulture);
            }

            total += sign * product;
        }

        return total;
    }

    /// <summary>Evaluates a column line's left side strictly left to right ("4*6+4", "14-7-1").</summary>
    private static long EvaluateLeftToRight(string text)
    {
        var terms = SplitKeeping(text, "+-*", out var operators);
        long value = long.Parse(terms[0], CultureInfo.InvariantCulture);
        for (int i = 1; i < terms.Count; i++)
        {
            long operand = long.Parse(terms[i], CultureInfo.InvariantCulture);
            value = operators[i - 1] switch
            {
                '+' => value + operand,
                '-' => value - operand,
                _ => value * operand,
            };
        }

        return value;
    }

    /// <summary>The operands of <paramref name="text"/> and the operators (from <paramref name="separators"/>) between them.</summary>
    private static List<string> SplitKeeping(string text, string separators, out List<char> operators)
    {
        var terms = new List<string>();
        operators = [];
        int start = 0;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (separators.Contains(ch))
            {
                terms.Add(text[start..i]);
                operators.Add(ch);
                start = i + 1;
            }
        }

        terms.Add(text[start..]);
        return terms;
    }

    /// <summary>Carry or borrow columns of an addition or subtraction, counted independently of the generator.</summary>
    private static int ColumnCarries(ArithmeticProblem p)
    {
        string a = p.A.ToString(CultureInfo.InvariantCulture), b = p.B.ToString(CultureInfo.InvariantCulture);
        int width = Math.Max(a.Length, b.Length);
        a = a.PadLeft(width, '0');
        b = b.PadLeft(width, '0');
        int count = 0, carry = 0;
        for (int i = width - 1; i >= 0; i--)
        {
            int x = a[i] - '0', y = b[i] - '0';
            if (p.Operation == ArithmeticOperation.Add)
            {
                carry = x + y + carry >= 10 ? 1 : 0;
            }
            else
            {
                carry = x - y - carry < 0 ? 1 : 0;
            }

            count += carry;
        }

        return count;
    }
}
