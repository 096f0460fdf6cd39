using System.Globalization;

namespace OR1.Runner.Sample;

/// <summary>The operation of an <see cref="ArithmeticProblem"/>.</summary>
public enum ArithmeticOperation
{
    /// <summary><c>a+b</c>.</summary>
    Add,

    /// <summary><c>a-b</c> with <c>a &gt;= b</c> (results are never negative).</summary>
    Subtract,

    /// <summary><c>a*b</c>: a two-digit number times a one-digit number.</summary>
    Multiply,

    /// <summary><c>a+b-c</c> with <c>a + b &gt;= c</c>, solved in two steps.</summary>
    AddThenSubtract,
}

/// <summary>Which side of the train / held-out split a problem falls on (<see cref="ArithmeticTask.SplitOf(string)"/>).</summary>
public enum DataSplit
{
    /// <summary>Problems the warm-up and RL train on.</summary>
    Train,

    /// <summary>Problems kept for the before/after evaluation; never trained on.</summary>
    HeldOut,
}

/// <summary>
/// One generated arithmetic problem: the operation, its non-negative operands, the difficulty level it was
/// generated for, and derived text (<see cref="Text"/>, <see cref="AnswerText"/>). Build them with
/// <see cref="ArithmeticTask.Generate"/>; the constructor only checks that the operands fit the operation.
/// </summary>
public sealed record ArithmeticProblem
{
    /// <summary>Checks the operands and builds the problem.</summary>
    /// <exception cref="ArgumentOutOfRangeException">a level outside 1..4, a negative operand, a negative result,
    /// or a multiplication that is not two digits times one digit.</exception>
    public ArithmeticProblem(int level, ArithmeticOperation operation, int a, int b, int c = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(level, ArithmeticTask.MinLevel);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(level, ArithmeticTask.MaxLevel);
        ArgumentOutOfRangeException.ThrowIfNegative(a);
        ArgumentOutOfRangeException.ThrowIfNegative(b);
        ArgumentOutOfRangeException.ThrowIfNegative(c);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(a, ArithmeticTask.MaxOperand);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(b, ArithmeticTask.MaxOperand);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(c, ArithmeticTask.MaxOperand);
        switch (operation)
        {
            case ArithmeticOperation.Add:
                break;
            case ArithmeticOperation.Subtract:
                if (a < b) throw new ArgumentOutOfRangeException(nameof(b), $"{a}-{b} would be negative; subtraction problems have a >= b");
                break;
            case ArithmeticOperation.Multiply:
                if (a < 10 || a > 99 || b > 9) throw new ArgumentOutOfRangeException(nameof(a), $"{a}*{b}: multiplication problems are a two-digit number times a one-digit number");
                break;
            case ArithmeticOperation.AddThenSubtract:
                if (a + b < c) throw new ArgumentOutOfRangeException(nameof(c), $"{a}+{b}-{c} would be negative; two-step problems have a + b >= c");
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(operation), operation, "unknown operation");
        }

        if (operation != ArithmeticOperation.AddThenSubtract && c != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(c), "only two-step problems have a third operand");
        }

        Level = level;
        Operation = operation;
        A = a;
        B = b;
        C = c;
    }

    /// <summary>The difficulty level (1..4) the problem was generated for.</summary>
    public int Level { get; }

    /// <summary>The operation.</summary>
    public ArithmeticOperation Operation { get; }

    /// <summary>The first operand.</summary>
    public int A { get; }

    /// <summary>The second operand.</summary>
    public int B { get; }

    /// <summary>The third operand (subtracted) of a two-step problem; 0 otherwise.</summary>
    public int C { get; }

    /// <summary>The problem as the user turn shows it: <c>47+38</c>, <c>345-78</c>, <c>47*6</c>, <c>47+38-29</c>.</summary>
    public string Text => Operation switch
    {
        ArithmeticOperation.Add => $"{Num(A)}+{Num(B)}",
        ArithmeticOperation.Subtract => $"{Num(A)}-{Num(B)}",
        ArithmeticOperation.Multiply => $"{Num(A)}*{Num(B)}",
        _ => $"{Num(A)}+{Num(B)}-{Num(C)}",
    };

    /// <summary>The exact result (never negative).</summary>
    public int Answer => Operation switch
    {
        ArithmeticOperation.Add => A + B,
        ArithmeticOperation.Subtract => A - B,
        ArithmeticOperation.Multiply => A * B,
        _ => A + B - C,
    };

    /// <summary>The result as the ground truth and the boxed answer write it (invariant digits, no separators).</summary>
    public string AnswerText => Num(Answer);

    /// <summary>The train / held-out side of the problem, from a hash of <see cref="Text"/>.</summary>
    public DataSplit Split => ArithmeticTask.SplitOf(Text);

    /// <inheritdoc />
    public override string ToString() => $"{Text}={AnswerText} (level {Level})";

    private static string Num(int value) => value.ToString(CultureInfo.InvariantCulture);
}
