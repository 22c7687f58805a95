import Foundation
import Media
import Tensor

/// A clip of audio: `samples` [C, L] floats (nominally in [-1, 1]) at `sampleRate` Hz.
public struct AudioClip {
    public var samples: Tensor
    public var sampleRate: Int

    /// - Precondition: `samples` has rank 2 ([C, L]) and `sampleRate > 0`.
    public init(samples: Tensor, sampleRate: Int) {
        precondition(samples.rank == 2, "AudioClip: expected samples [C, L], got \(samples.shape)")
        precondition(sampleRate > 0, "AudioClip: sample rate \(sampleRate) must be positive")
        self.samples = samples
        self.sampleRate = sampleRate
    }

    public var channels: Int { samples.shape[0] }
    public var length: Int { samples.shape[1] }
    public var duration: Double { Double(length) / Double(sampleRate) }

    /// The mean of the channels: [C, L] -> [1, L]. A mono clip is returned as is.
    public func mono() -> AudioClip {
        if channels == 1 { return self }
        let out = Tensor.zeros([1, length])
        let src = samples.data, dst = out.data
        let scale = 1 / Float(channels)
        for c in 0..<channels {
            for i in 0..<length { dst[i] += src[c * length + i] }
        }
        for i in 0..<length { dst[i] *= scale }
        return AudioClip(samples: out, sampleRate: sampleRate)
    }

    /// The first `length` samples at `rate` (fewer when the clip is shorter): cut before
    /// resampling to the input they need, so a long or low-rate file never resamples more than
    /// is used.
    public func window(rate: Int, length: Int) -> AudioClip {
        // Input samples behind `length` outputs, plus the resampling filter's reach.
        let need = Int((Double(length) * Double(sampleRate) / Double(rate)).rounded(.up)) + 2 * Resampler(from: sampleRate, to: rate).halfTaps + 1
        var clip = self
        if need < self.length {
            let c = channels, n = self.length
            let t = Tensor.zeros([c, need])
            for ch in 0..<c { (t.data + ch * need).update(from: samples.data + ch * n, count: need) }
            clip = AudioClip(samples: t, sampleRate: sampleRate)
        }
        return clip.resampled(to: rate)
    }

    /// The clip at another sample rate, through a band-limited Kaiser-windowed sinc filter.
    public func resampled(to rate: Int) -> AudioClip {
        if rate == sampleRate { return self }
        let r = Resampler(from: sampleRate, to: rate)
        return AudioClip(samples: r.process(samples), sampleRate: rate)
    }
}

/// Reads any format libsndfile reads (WAV PCM 8/16/24/32 and float, FLAC, OGG/Vorbis, AIFF, ...)
/// and writes WAV as 16-bit PCM or 32-bit float.
public enum AudioCodec {
    /// Largest inputs we accept; checked against header fields before allocating.
    public struct Limits: Sendable {
        public var maxChannels: Int
        public var maxSampleRate: Int
        /// Total samples over all channels.
        public var maxSamples: Int
        /// Below this a header's rate is nonsense (and resampling it up would multiply the samples).
        public var minSampleRate: Int
        /// Read only the first seconds (nil: all): what a model's window can use.
        public var maxSeconds: Double?
        public init(maxChannels: Int = 64, maxSampleRate: Int = 768_000, maxSamples: Int = 1 << 31,
                    minSampleRate: Int = 1000, maxSeconds: Double? = nil) {
            self.maxChannels = maxChannels
            self.maxSampleRate = maxSampleRate
            self.maxSamples = maxSamples
            self.minSampleRate = minSampleRate
            self.maxSeconds = maxSeconds
        }
    }

    /// Sample format of written WAV files.
    public enum SampleFormat: Sendable, Equatable {
        /// 16-bit PCM: round(x * 32768), clipped to [-32768, 32767]; NaN -> 0.
        case pcm16
        /// 16-bit PCM with TPDF dither of ±1 LSB before rounding, from a seeded generator.
        case pcm16Dithered(seed: UInt64)
        /// 32-bit IEEE float, unclipped; NaN and infinities become 0.
        case float32
    }

    /// Reads a file into [C, L] floats. Integer PCM maps to [-1, 1) (divided by 2^(bits-1)).
    /// - Throws: `MediaError` for a missing, truncated, corrupt or out-of-limits file.
    public static func read(_ url: URL, limits: Limits = Limits()) throws -> AudioClip {
        let path = url.path
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw MediaError.cannotOpen(file: path, reason: "no readable file at this path")
        }
        try checkContainerSize(path)
        let d = try SndFile.read(path: path, limits: limits)
        let length = d.samples.count / d.channels
        // [L, C] interleaved -> [C, L] planar
        let t = Tensor.zeros([d.channels, length])
        let dst = t.data
        var nonFinite = 0
        d.samples.withUnsafeBufferPointer { src in
            for i in 0..<length {
                for c in 0..<d.channels {
                    let x = src[i * d.channels + c]
                    if !x.isFinite { nonFinite += 1 }
                    dst[c * length + i] = x
                }
            }
        }
        // A float file can hold NaN or infinity; one such sample would poison a training run.
        guard nonFinite == 0 else {
            throw MediaError.invalidData(file: path, reason: "\(nonFinite) samples are NaN or infinite")
        }
        return AudioClip(samples: t, sampleRate: d.sampleRate)
    }

    /// Writes a clip as a WAV file, atomically (temp file in the same folder, then rename).
    public static func write(_ clip: AudioClip, to url: URL, format: SampleFormat = .pcm16) throws {
        let path = url.path
        let limits = Limits()
        try MediaLimits.check(clip.channels, max: limits.maxChannels, "channel count", file: path)
        try MediaLimits.check(clip.sampleRate, max: limits.maxSampleRate, "sample rate", file: path)
        let (c, l) = (clip.channels, clip.length)
        let src = clip.samples.data
        try MediaFile.write(to: url) { temp in
            switch format {
            case .float32:
                var out = [Float](repeating: 0, count: c * l)
                for i in 0..<l {
                    for k in 0..<c {
                        let x = src[k * l + i]
                        out[i * c + k] = x.isFinite ? x : 0
                    }
                }
                try SndFile.writeFloat(path: temp, file: path, samples: out, channels: c, sampleRate: clip.sampleRate)
            case .pcm16, .pcm16Dithered:
                var rng: SplitMix64? = nil
                if case .pcm16Dithered(let seed) = format { rng = SplitMix64(seed: seed) }
                var out = [Int16](repeating: 0, count: c * l)
                for i in 0..<l {
                    for k in 0..<c {
                        var v = src[k * l + i] * 32768
                        if rng != nil { v += rng!.nextUnit() + rng!.nextUnit() - 1 }
                        out[i * c + k] = quantize16(v)
                    }
                }
                try SndFile.writePCM16(path: temp, file: path, samples: out, channels: c, sampleRate: clip.sampleRate)
            }
        }
    }

    /// Rounds to nearest and clips to the Int16 range; NaN becomes 0 (never a trapping conversion).
    @inline(__always)
    static func quantize16(_ v: Float) -> Int16 {
        if v.isNaN { return 0 }
        let r = v.rounded()
        if r <= -32768 { return .min }
        if r >= 32767 { return .max }
        return Int16(r)
    }

    /// RIFF/RF64-less WAV and AIFF declare their total size up front; libsndfile quietly reads
    /// what is there, so a file shorter than it says is caught here as truncated.
    static func checkContainerSize(_ path: String) throws {
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw MediaError.cannotOpen(file: path, reason: "cannot open for reading")
        }
        defer { try? h.close() }
        let head = [UInt8]((try? h.read(upToCount: 12)) ?? Data())
        let fileSize = (try? h.seekToEnd()).map { Int($0) } ?? 0
        guard head.count >= 8 else {
            throw MediaError.invalidData(file: path, reason: "file is \(fileSize) bytes, too short for any audio header")
        }
        let tag = String(decoding: head[0..<4], as: UTF8.self)
        let le = Int(head[4]) | Int(head[5]) << 8 | Int(head[6]) << 16 | Int(head[7]) << 24
        let be = Int(head[7]) | Int(head[6]) << 8 | Int(head[5]) << 16 | Int(head[4]) << 24
        let declared: Int
        switch tag {
        case "RIFF": declared = le
        case "FORM": declared = be
        default: return
        }
        // Streaming writers leave 0 or 0xFFFFFFFF; an odd chunk may omit its pad byte.
        if declared == 0 || declared >= 0xFFFF_FFF0 { return }
        if declared + 8 > fileSize + 1 {
            throw MediaError.invalidData(file: path, reason: "truncated: header declares \(declared + 8) bytes, file has \(fileSize)")
        }
    }
}

/// A tiny seeded generator (splitmix64) for reproducible dither.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func nextUnit() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }
}
