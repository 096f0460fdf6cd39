namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// A parsed arithmetic expression (see <see cref="MathExpressionParser"/>): numbers, pi and e, variables,
/// sums, products, powers, roots, factorials. Sums and products are n-ary, so long chains such as
/// <c>1+1+...+1</c> stay shallow; nesting depth is bounded by the parser.
/// </summary>
internal abstract class MathExpression
{
    /// <summary>
    /// The value; variables take their values from <paramref name="variables"/>, and an expression with a
    /// variable but no assignment throws <see cref="MathParseException"/> (it is not a number).
    /// </summary>
    public abstract NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null);

    /// <summary>Adds the names of the variables used to <paramref name="names"/>.</summary>
    public abstract void CollectVariables(ISet<string> names);
}

internal sealed class NumberExpression(NumericValue value) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null) => value;

    public override void CollectVariables(ISet<string> names) { }
}

internal sealed class VariableExpression(string name) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null)
    {
        if (variables is null || !variables.TryGetValue(name, out double value))
            throw new MathParseException($"not a number: contains the variable {name}");
        return NumericValue.Of(value);
    }

    public override void CollectVariables(ISet<string> names) => names.Add(name);
}

internal sealed class SumExpression(IReadOnlyList<(bool Subtract, MathExpression Term)> terms) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null)
    {
        var total = NumericValue.Of(0);
        foreach (var (subtract, term) in terms)
        {
            deadline.Check();
            var value = term.Evaluate(deadline, variables);
            total = subtract ? NumericValue.Subtract(total, value) : NumericValue.Add(total, value);
        }
        return total;
    }

    public override void CollectVariables(ISet<string> names)
    {
        foreach (var (_, term) in terms) term.CollectVariables(names);
    }
}

internal sealed class ProductExpression(IReadOnlyList<(bool Divide, MathExpression Factor)> factors) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null)
    {
        var total = NumericValue.Of(1);
        foreach (var (divide, factor) in factors)
        {
            deadline.Check();
            var value = factor.Evaluate(deadline, variables);
            total = divide ? NumericValue.Divide(total, value) : NumericValue.Multiply(total, value);
        }
        return total;
    }

    public override void CollectVariables(ISet<string> names)
    {
        foreach (var (_, factor) in factors) factor.CollectVariables(names);
    }
}

internal sealed class NegateExpression(MathExpression operand) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null) =>
        NumericValue.Negate(operand.Evaluate(deadline, variables));

    public override void CollectVariables(ISet<string> names) => operand.CollectVariables(names);
}

internal sealed class PowerExpression(MathExpression @base, MathExpression exponent) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null)
    {
        deadline.Check();
        var b = @base.Evaluate(deadline, variables);
        var e = exponent.Evaluate(deadline, variables);
        return NumericValue.Power(b, e);
    }

    public override void CollectVariables(ISet<string> names)
    {
        @base.CollectVariables(names);
        exponent.CollectVariables(names);
    }
}

/// <summary><c>\sqrt{x}</c> or <c>\sqrt[n]{x}</c>; the index must be a small positive integer.</summary>
internal sealed class RootExpression(MathExpression radicand, MathExpression? index) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null)
    {
        var x = radicand.Evaluate(deadline, variables);
        if (index is null) return NumericValue.Root(x, 2);
        var n = index.Evaluate(deadline, variables);
        if (n.Exact is { IsInteger: true } k && k.Sign > 0 && k.Numerator <= 64) return NumericValue.Root(x, (int)k.Numerator);
        return NumericValue.Power(x, NumericValue.Divide(NumericValue.Of(1), n));
    }

    public override void CollectVariables(ISet<string> names)
    {
        radicand.CollectVariables(names);
        index?.CollectVariables(names);
    }
}

internal sealed class FactorialExpression(MathExpression operand) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null) =>
        NumericValue.Factorial(operand.Evaluate(deadline, variables), deadline);

    public override void CollectVariables(ISet<string> names) => operand.CollectVariables(names);
}

/// <summary><c>\ln x</c>, <c>\log x</c> (base 10), <c>\log_b x</c>, <c>\exp x</c>, trigonometric functions in radians: always approximate.</summary>
internal sealed class BinomialExpression(MathExpression n, MathExpression k) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null) =>
        NumericValue.Binomial(n.Evaluate(deadline, variables), k.Evaluate(deadline, variables), deadline);

    public override void CollectVariables(ISet<string> names)
    {
        n.CollectVariables(names);
        k.CollectVariables(names);
    }
}

internal sealed class FunctionExpression(string name, MathExpression argument, MathExpression? logBase) : MathExpression
{
    public override NumericValue Evaluate(Deadline deadline, IReadOnlyDictionary<string, double>? variables = null)
    {
        double x = argument.Evaluate(deadline, variables).Approx;
        double value = name switch
        {
            "ln" => System.Math.Log(x),
            "log" when logBase is not null => System.Math.Log(x) / System.Math.Log(logBase.Evaluate(deadline, variables).Approx),
            "log" => System.Math.Log10(x),
            "exp" => System.Math.Exp(x),
            "sin" => System.Math.Sin(x),
            "cos" => System.Math.Cos(x),
            "tan" => System.Math.Tan(x),
            "cot" => 1 / System.Math.Tan(x),
            "sec" => 1 / System.Math.Cos(x),
            "csc" => 1 / System.Math.Sin(x),
            "arcsin" => System.Math.Asin(x),
            "arccos" => System.Math.Acos(x),
            "arctan" => System.Math.Atan(x),
            _ => double.NaN,
        };
        return NumericValue.Of(value);
    }

    public override void CollectVariables(ISet<string> names)
    {
        argument.CollectVariables(names);
        logBase?.CollectVariables(names);
    }
}
