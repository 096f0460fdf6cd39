using OR1.Native;

// A backend by name: cpu (always), cuda (an NVIDIA GPU; the PTX is in the package), emu (the CUDA kernels on
// the host emulator, Linux x64), ilgpu-cuda, ilgpu-cpu. One that cannot start here throws
// BackendUnavailableException saying what is missing (no GPU, no driver, no native library).
using IBackend backend = Backends.Create(args.Length > 0 ? args[0] : "cpu");

float[] rows = [3, 4, 0, 0, 1, 1, 1, 1];                  // two tokens of width 4
using var x = backend.Allocate(DType.Float32, new TensorShape(2, 4));
using var weight = backend.Allocate(DType.Float32, new TensorShape(4));
using var y = backend.Allocate(DType.Float32, new TensorShape(2, 4));
using var invRms = backend.Allocate(DType.Float32, new TensorShape(2));
backend.Upload<float>(rows, x);
backend.Fill(weight, 1f);
backend.RmsNormForward(x, weight, 1e-6f, y, invRms);      // y = x / rms(x) * weight

var result = new float[8];
backend.Download<float>(y, result);
double expected = 3 / Math.Sqrt((3 * 3 + 4 * 4) / 4.0 + 1e-6);
if (Math.Abs(result[0] - expected) > 1e-5) throw new Exception($"RMSNorm gave {result[0]}, expected {expected}");
Console.WriteLine($"OK ({backend.Description}): [{string.Join(", ", result)}]");
