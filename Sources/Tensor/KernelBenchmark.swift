import Foundation

/// Timings of the engine's hot kernels on fixed shapes, for `diffuse bench kernels`.
public struct KernelTiming: Codable, Sendable {
    public var name: String
    public var shape: String
    /// Median wall time of one call, seconds.
    public var median_s: Double
    public var gflops: Double?
    public var gbps: Double?
    /// GFLOP/s of this kernel over the sgemm GFLOP/s of the same run (convolutions).
    public var fraction_of_sgemm: Double?
}

public enum KernelBenchmark {
    /// Median seconds of `runs` calls after `warmup` calls.
    public static func median(runs: Int, warmup: Int = 2, _ body: () -> Void) -> Double {
        for _ in 0..<warmup { body() }
        var times: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        times.sort()
        return times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
    }

    /// GFLOP/s of a 1024³ sgemm (the reference rate the other numbers are compared with).
    public static func sgemmRate(runs: Int = 5) -> Double {
        GradMode.withoutGrad {
            var rng = RandomGenerator(seed: 0)
            let a = rng.normal([1024, 1024]), b = rng.normal([1024, 1024])
            return 2 * pow(1024.0, 3) / median(runs: runs) { _ = a.matmul(b) } / 1e9
        }
    }

    /// Runs every kernel; `progress` is told each kernel's name before it runs.
    public static func run(runs: Int = 7, progress: (String) -> Void = { _ in }) -> [KernelTiming] {
        GradMode.withoutGrad { runAll(runs: runs, progress: progress) }
    }

    private static func runAll(runs: Int, progress: (String) -> Void) -> [KernelTiming] {
        var rng = RandomGenerator(seed: 0)
        var out: [KernelTiming] = []

        progress("sgemm")
        let a = rng.normal([1024, 1024]), b = rng.normal([1024, 1024])
        let tg = median(runs: runs) { _ = a.matmul(b) }
        let sgemm = 2 * pow(1024.0, 3) / tg / 1e9
        out.append(KernelTiming(name: "sgemm", shape: "1024x1024x1024", median_s: tg, gflops: sgemm))

        progress("conv2d")
        let x = rng.normal([16, 128, 32, 32]), w = rng.normal([128, 128, 3, 3]), bias = rng.normal([128])
        let p = Conv2dParams(stride: (1, 1), padding: (1, 1))
        let convFlops = 2.0 * 16 * 128 * 32 * 32 * 128 * 9
        let tf = median(runs: runs) { _ = conv2dForward(x, w, bias, p) }
        out.append(KernelTiming(name: "conv2d_forward", shape: "N16 C128->128 32x32 k3", median_s: tf,
                                gflops: convFlops / tf / 1e9, fraction_of_sgemm: convFlops / tf / 1e9 / sgemm))
        let gy = rng.normal([16, 128, 32, 32])
        let tb = median(runs: runs) { _ = conv2dBackward(x, w, hasBias: true, p, g: gy, needX: true, needW: true) }
        out.append(KernelTiming(name: "conv2d_backward", shape: "N16 C128->128 32x32 k3 (dx, dw, db)", median_s: tb,
                                gflops: 2 * convFlops / tb / 1e9, fraction_of_sgemm: 2 * convFlops / tb / 1e9 / sgemm))

        progress("conv1d")
        let x1 = rng.normal([4, 64, 16384]), w1 = rng.normal([64, 64, 5])
        let c1Flops = 2.0 * 4 * 64 * 16384 * 64 * 5
        let t1 = median(runs: runs) { _ = x1.conv1d(w1, padding: 2) }
        out.append(KernelTiming(name: "conv1d_forward", shape: "N4 C64->64 L16384 k5", median_s: t1,
                                gflops: c1Flops / t1 / 1e9, fraction_of_sgemm: c1Flops / t1 / 1e9 / sgemm))

        progress("group_norm")
        let gx = rng.normal([16, 128, 32, 32]), gw = rng.normal([128]), gb = rng.normal([128])
        let tn = median(runs: runs) { _ = gx.groupNorm(groups: 32, weight: gw, bias: gb) }
        out.append(KernelTiming(name: "group_norm", shape: "N16 C128 32x32 G32", median_s: tn,
                                gbps: 2.0 * Double(gx.count) * 4 / tn / 1e9))

        progress("attention")
        let q = rng.normal([16, 4, 256, 32]), k = rng.normal([16, 4, 256, 32]), v = rng.normal([16, 4, 256, 32])
        let attFlops = 4.0 * 16 * 4 * 256 * 256 * 32
        let ta = median(runs: runs) { _ = Tensor.scaledDotProductAttention(q, k, v) }
        out.append(KernelTiming(name: "attention", shape: "N16 H4 L256 d32", median_s: ta, gflops: attFlops / ta / 1e9))

        progress("silu")
        let s = rng.normal([16 << 20])
        let ts = median(runs: runs) { _ = s.silu() }
        out.append(KernelTiming(name: "silu", shape: "16M floats", median_s: ts, gbps: 2.0 * Double(s.count) * 4 / ts / 1e9))
        return out
    }
}
