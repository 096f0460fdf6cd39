namespace OR1.Native;

/// <summary>
/// A decode step's inputs on the device, which <see cref="IBackend.AdvanceDecode"/> moves on to the next step in place.
/// All Int32; B rows.
/// </summary>
/// <param name="Tokens">[B] the token each row embeds.</param>
/// <param name="Positions">[B] its position.</param>
/// <param name="Lengths">[B] the row's cache length once that token's key is written (position + 1).</param>
/// <param name="Streams">[B, 2] the row's random stream: (request id, position in the response).</param>
/// <param name="CacheRows">[B] the flattened cache row the token's key and value go to.</param>
/// <param name="PageTable">[B, pages per row] each row's pages (-1 where it holds none), which cache rows are read from.</param>
/// <param name="PageSize">Positions per page: position p of a row is in its page-table slot p / PageSize.</param>
/// <param name="SinkRow">The cache row a stopped row writes from then on (a row no request reads).</param>
public readonly record struct DecodeInputs(
    Tensor Tokens, Tensor Positions, Tensor Lengths, Tensor Streams, Tensor CacheRows, Tensor PageTable, int PageSize, int SinkRow);
