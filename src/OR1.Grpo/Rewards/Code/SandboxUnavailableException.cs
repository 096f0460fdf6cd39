namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// Code rewards cannot run on this machine: a tool is missing (the message says what to install) or the
/// sandbox does not start (the message has bubblewrap's error). Never a reason to run code unsandboxed; only
/// <see cref="SandboxOptions.UnsafeNoSandbox"/> does that.
/// </summary>
public sealed class SandboxUnavailableException(string message) : Exception(message);
