import Foundation

/// Fundamental-frequency estimation with YIN (de Cheveigné & Kawahara 2002): the cumulative-mean-
/// normalised difference function, its first dip under a threshold, parabolic interpolation.
public enum Pitch {
    public struct Settings: Sendable {
        public var frame = 1024
        public var hop = 256
        public var minFrequency = 50.0
        public var maxFrequency = 1000.0
        /// Dip threshold of the normalised difference (YIN's absolute threshold).
        public var threshold = 0.15
        /// Frames quieter than this RMS are unvoiced.
        public var minRMS: Float = 0.01
        public init() {}
    }

    /// The frequency of each frame (nil: unvoiced or silent).
    public static func track(_ x: [Float], sampleRate: Int, settings s: Settings = Settings()) -> [Double?] {
        let tauMin = Swift.max(2, Int(Double(sampleRate) / s.maxFrequency))
        let tauMax = Swift.min(s.frame - 1, Int((Double(sampleRate) / s.minFrequency).rounded(.up)))
        let w = s.frame - tauMax  // summation window: x[j] and x[j + τ] stay inside the frame
        guard x.count >= s.frame, w > 0, tauMax > tauMin else { return [] }
        var out: [Double?] = []
        var d = [Double](repeating: 0, count: tauMax + 1)
        var start = 0
        while start + s.frame <= x.count {
            defer { start += s.hop }
            var energy: Float = 0
            for j in 0..<s.frame { energy += x[start + j] * x[start + j] }
            guard (energy / Float(s.frame)).squareRoot() >= s.minRMS else { out.append(nil); continue }
            x.withUnsafeBufferPointer { b in
                let p = b.baseAddress! + start
                for tau in 1...tauMax {
                    var acc: Float = 0
                    for j in 0..<w { let e = p[j] - p[j + tau]; acc += e * e }
                    d[tau] = Double(acc)
                }
            }
            // cumulative mean normalised difference d'(τ) = d(τ) τ / Σ_{k ≤ τ} d(k)
            var sum = 0.0
            var nd = [Double](repeating: 1, count: tauMax + 1)
            for tau in 1...tauMax {
                sum += d[tau]
                nd[tau] = sum > 0 ? d[tau] * Double(tau) / sum : 1
            }
            var best: Int? = nil
            var tau = tauMin
            while tau <= tauMax {
                if nd[tau] < s.threshold {
                    while tau + 1 <= tauMax && nd[tau + 1] < nd[tau] { tau += 1 }
                    best = tau
                    break
                }
                tau += 1
            }
            guard let t = best else { out.append(nil); continue }
            var refined = Double(t)
            if t > 1 && t < tauMax {
                let a = nd[t - 1], b = nd[t], c = nd[t + 1]
                let den = a - 2 * b + c
                if den != 0 { refined += 0.5 * (a - c) / den }
            }
            out.append(Double(sampleRate) / refined)
        }
        return out
    }

    /// One clip's pitch: the median over voiced frames, and the share of frames that are voiced.
    public struct Estimate: Sendable {
        public var frequency: Double?
        public var voicedFraction: Double
        /// Fractional MIDI note number of `frequency` (69 = A4 = 440 Hz).
        public var midi: Double? { frequency.map { 69 + 12 * log2($0 / 440) } }
    }

    public static func estimate(_ x: [Float], sampleRate: Int, settings: Settings = Settings()) -> Estimate {
        let t = track(x, sampleRate: sampleRate, settings: settings)
        let voiced = t.compactMap { $0 }.sorted()
        let f = voiced.isEmpty ? nil : voiced[voiced.count / 2]
        return Estimate(frequency: f, voicedFraction: t.isEmpty ? 0 : Double(voiced.count) / Double(t.count))
    }

    /// Frequency of a MIDI note number.
    public static func frequency(midi: Double) -> Double { 440 * pow(2, (midi - 69) / 12) }

    /// Distance of `frequency` from MIDI note `midi`, in cents.
    public static func cents(_ frequency: Double, from midi: Double) -> Double {
        1200 * log2(frequency / Pitch.frequency(midi: midi))
    }
}
