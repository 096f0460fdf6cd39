namespace OR1.Runner.Cli;

/// <summary>A problem with what the user asked for (a bad file, a bad argument): printed without a stack trace, exit code 2.</summary>
public sealed class CliException(string message, Exception? inner = null) : Exception(message, inner);
