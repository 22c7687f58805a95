import Foundation
import Audio

/// What can be measured on clips without a learned model: pitch against the class (when class
/// names are MIDI note numbers), voicing, clipping, silence and the broadband noise floor.
public struct AudioMetrics: Codable, Sendable {
    public var clips = 0
    /// Clips whose class names a MIDI pitch, and of those, the share whose YIN pitch is within
    /// 50 cents of it (octave errors count as misses).
    public var pitchedClips = 0
    public var within50Cents = 0.0
    public var medianAbsCents: Double? = nil
    /// Mean share of voiced frames.
    public var voicedFraction = 0.0
    /// Share of clips with more than 0.1 % of their samples at full scale (|x| ≥ 0.999).
    public var clippedClips = 0.0
    /// Share of clips quieter than -60 dBFS RMS.
    public var silentClips = 0.0
    public var meanRMS = 0.0
    /// How far below its loudest spectrogram bin a clip's broadband floor sits, in dB (the
    /// median over non-silent clips of `noiseFloor(_:)`): hiss under a note lowers it.
    public var noiseFloorDB: Double? = nil

    enum CodingKeys: String, CodingKey {
        case clips, pitchedClips = "pitched_clips", within50Cents = "within_50_cents", medianAbsCents = "median_abs_cents"
        case voicedFraction = "voiced_fraction", clippedClips = "clipped_clips", silentClips = "silent_clips", meanRMS = "mean_rms"
        case noiseFloorDB = "noise_floor_db"
    }

    /// The noise floor of one clip, in dB below its peak: the Hann STFT (512-sample frames, hop
    /// 128) in dB; the frames where the clip sounds (a bin within 40 dB of the clip's peak); the
    /// median bin of those frames over all frequencies, subtracted from the peak. A note's
    /// harmonics fill a minority of bins, so the median is what lies between and above them:
    /// broadband hiss raises it, a clean note leaves it near the window's own leakage.
    /// Capped at 120 dB (digital silence between harmonics); nil for a clip that never sounds.
    public static func noiseFloor(_ x: [Float]) -> Double? {
        let db = Spectrogram.decibels(x)
        guard let frames = db.first?.count, frames > 0 else { return nil }
        var peak: Float = -.infinity
        for row in db { for v in row where v > peak { peak = v } }
        guard peak > -100 else { return nil }
        var values: [Float] = []
        for f in 0..<frames where db.contains(where: { $0[f] >= peak - 40 }) {
            for row in db { values.append(row[f]) }
        }
        guard !values.isEmpty else { return nil }
        values.sort()
        return Swift.min(120, Double(peak - values[values.count / 2]))
    }

    /// Measures `clips` (mono samples), each with its class name (or nil).
    /// - Parameter window: seconds from the clip's start that the pitch is taken over (a note's
    ///   sustained part; its release fades into noise).
    public static func measure(_ clips: [(samples: [Float], className: String?)], sampleRate: Int,
                               window: Double = 0.5) -> AudioMetrics {
        var m = AudioMetrics()
        m.clips = clips.count
        guard !clips.isEmpty else { return m }
        var cents: [Double] = []
        var hits = 0, clipped = 0, silent = 0
        var voiced = 0.0, rmsSum = 0.0
        var floors: [Double] = []
        for (x, name) in clips {
            let n = Swift.max(1, x.count)
            var sq = 0.0, full = 0
            for v in x { sq += Double(v * v); if abs(v) >= 0.999 { full += 1 } }
            let rms = (sq / Double(n)).squareRoot()
            rmsSum += rms
            if rms < 1e-3 { silent += 1 } else if let f = noiseFloor(x) { floors.append(f) }
            if Double(full) > 0.001 * Double(n) { clipped += 1 }
            let head = Array(x.prefix(Int(window * Double(sampleRate))))
            let e = Pitch.estimate(head, sampleRate: sampleRate)
            voiced += e.voicedFraction
            if let name, let midi = Int(name), (0..<128).contains(midi) {
                m.pitchedClips += 1
                if let f = e.frequency {
                    let c = Pitch.cents(f, from: Double(midi))
                    cents.append(abs(c))
                    if abs(c) <= 50 { hits += 1 }
                } else {
                    cents.append(.infinity)
                }
            }
        }
        let k = Double(clips.count)
        m.voicedFraction = voiced / k
        m.clippedClips = Double(clipped) / k
        m.silentClips = Double(silent) / k
        m.meanRMS = rmsSum / k
        if !floors.isEmpty { m.noiseFloorDB = floors.sorted()[floors.count / 2] }
        if m.pitchedClips > 0 {
            m.within50Cents = Double(hits) / Double(m.pitchedClips)
            let sorted = cents.sorted()
            m.medianAbsCents = sorted[sorted.count / 2].isFinite ? sorted[sorted.count / 2] : nil
        }
        return m
    }

    /// Every clip of a labelled folder, at `sampleRate`, mono, up to `seconds` long.
    public static func measure(folder: URL, sampleRate: Int = 16_000, seconds: Double = 1.0) throws -> AudioMetrics {
        let f = try AudioFolder(folder, sampleRate: sampleRate, length: Int(seconds * Double(sampleRate)))
        f.warn = { _ in }
        let clips = (0..<f.count).map { i in (f.clip(i), f.classNames.isEmpty ? nil : f.classNames[f.label(i)]) }
        return measure(clips, sampleRate: sampleRate)
    }

    public var summary: String {
        var lines = ["clips: \(clips)"]
        if pitchedClips > 0 {
            lines.append(String(format: "pitch within 50 cents: %.1f %% of %d (median |error| %@ cents)", 100 * within50Cents, pitchedClips,
                                medianAbsCents.map { String(format: "%.1f", $0) } ?? "n/a"))
        }
        lines.append(String(format: "voiced frames: %.1f %%", 100 * voicedFraction))
        lines.append(String(format: "clipped clips: %.1f %%, silent clips: %.1f %%, mean RMS %.3f", 100 * clippedClips, 100 * silentClips, meanRMS))
        if let noiseFloorDB {
            lines.append(String(format: "noise floor: %.1f dB below the peak (median over clips of the median spectrogram bin while the clip sounds)", noiseFloorDB))
        }
        return lines.joined(separator: "\n")
    }
}
