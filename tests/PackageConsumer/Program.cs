// Calls RMSNorm and attention from the OR1.Native package on the Cpu backend and checks them against
// values computed here in double precision. Prints "OK" and exits 0 on success.
using OR1.Native;
using OR1.Native.Cpu;

using var backend = new CpuBackend();
const int rows = 3, width = 8;
var x = Enumerable.Range(0, rows * width).Select(i => (float)Math.Sin(i + 1)).ToArray();
var w = Enumerable.Range(0, width).Select(i => 1f + 0.1f * i).ToArray();
using var xt = backend.Allocate(DType.Float32, new TensorShape(rows, width));
using var wt = backend.Allocate(DType.Float32, new TensorShape(width));
using var yt = backend.Allocate(DType.Float32, new TensorShape(rows, width));
using var inv = backend.Allocate(DType.Float32, new TensorShape(rows));
backend.Upload<float>(x, xt);
backend.Upload<float>(w, wt);
backend.RmsNormForward(xt, wt, 1e-6f, yt, inv);
var y = new float[rows * width];
backend.Download<float>(yt, y);
double worst = 0;
for (int r = 0; r < rows; r++)
{
    double ms = 0;
    for (int d = 0; d < width; d++) ms += (double)x[r * width + d] * x[r * width + d];
    double scale = 1 / Math.Sqrt(ms / width + 1e-6);
    for (int d = 0; d < width; d++) worst = Math.Max(worst, Math.Abs(y[r * width + d] - x[r * width + d] * scale * w[d]));
}
if (worst > 1e-5) { Console.Error.WriteLine($"RMSNorm error {worst}"); return 1; }

// Attention over two packed sequences (lengths 1 and 2), one head of dim 2: the first row of each sequence
// attends only to itself, so its output equals its own value row.
var heads = new AttentionHeads(1, 1, 2);
float[] q = [1, 0, 0, 1, 1, 1], k = [1, 0, 1, 0, 0, 1], v = [5, 6, 7, 8, 9, 10];
using var qt = backend.Allocate(DType.Float32, new TensorShape(3, 2));
using var kt = backend.Allocate(DType.Float32, new TensorShape(3, 2));
using var vt = backend.Allocate(DType.Float32, new TensorShape(3, 2));
using var ot = backend.Allocate(DType.Float32, new TensorShape(3, 2));
using var lse = backend.Allocate(DType.Float32, new TensorShape(3, 1));
using var sequences = Segments.FromLengths(backend, [1, 2]);
backend.Upload<float>(q, qt);
backend.Upload<float>(k, kt);
backend.Upload<float>(v, vt);
backend.AttentionForward(qt, kt, vt, sequences, heads, 1f, ot, lse);
var o = new float[6];
backend.Download<float>(ot, o);
// Row 2 (second sequence, position 1): scores q·k = [1*1 + 1*0, 1*0 + 1*1] = [1, 1] -> equal weights.
double[] expected = [5, 6, 7, 8, 8, 9];
double attentionError = expected.Select((e, i) => Math.Abs(e - o[i])).Max();
if (attentionError > 1e-5) { Console.Error.WriteLine($"attention error {attentionError}: [{string.Join(", ", o)}]"); return 1; }
Console.WriteLine($"OK ({backend.Description})");
return 0;
