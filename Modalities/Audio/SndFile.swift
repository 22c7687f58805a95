import CSndFile
import Foundation
import Media

/// The only file that imports libsndfile: interleaved samples in and out of files.
/// Everything above it (clips, tensors, resampling, dither) is plain Swift.
enum SndFile {
    struct Decoded {
        /// Interleaved frames: [L, C] in einops notation.
        var samples: [Float]
        var channels: Int
        var sampleRate: Int
    }

    /// Reads every frame of any format libsndfile understands as floats in [-1, 1)
    /// (integer PCM is divided by 2^(bits-1); float files pass through).
    static func read(path: String, limits: AudioCodec.Limits) throws -> Decoded {
        var info = SF_INFO()
        guard let sf = sf_open(path, Int32(SFM_READ), &info) else {
            throw MediaError.invalidData(file: path, reason: String(cString: sf_strerror(nil)))
        }
        defer { sf_close(sf) }
        let channels = Int(info.channels), rate = Int(info.samplerate)
        try MediaLimits.check(channels, max: limits.maxChannels, "channel count", file: path)
        try MediaLimits.check(rate, max: limits.maxSampleRate, "sample rate", file: path)
        guard rate >= limits.minSampleRate else {
            throw MediaError.limitExceeded(file: path, reason: "sample rate is \(rate) Hz, below the minimum \(limits.minSampleRate) Hz")
        }
        // Frames wanted: all, or the first maxSeconds.
        let wanted = limits.maxSeconds.map { Int(Swift.min(Double(Int.max / 2), ($0 * Double(rate)).rounded(.up))) } ?? Int.max
        let declared = info.frames
        if declared != Int64.max {
            guard declared >= 0, declared <= Int64(limits.maxSamples / channels) else {
                throw MediaError.limitExceeded(file: path, reason: "header declares \(declared) frames of \(channels) channels, more than \(limits.maxSamples) samples")
            }
        }

        // The header's frame count only caps the reservation; the file decides how much is read.
        let chunkFrames = 1 << 16
        var samples: [Float] = []
        samples.reserveCapacity(min(Int(max(declared, 0)), 1 << 22) * channels)
        var chunk = [Float](repeating: 0, count: chunkFrames * channels)
        var total = 0
        while total < wanted {
            let ask = Swift.min(chunkFrames, wanted - total)
            let got = chunk.withUnsafeMutableBufferPointer { sf_readf_float(sf, $0.baseAddress, sf_count_t(ask)) }
            if got <= 0 { break }
            total += Int(got)
            guard total * channels <= limits.maxSamples else {
                throw MediaError.limitExceeded(file: path, reason: "more than \(limits.maxSamples) samples")
            }
            samples.append(contentsOf: chunk[0..<(Int(got) * channels)])
        }
        let err = sf_error(sf)
        if err != 0 {
            throw MediaError.invalidData(file: path, reason: String(cString: sf_strerror(sf)))
        }
        if declared != Int64.max && Int64(total) < declared && total < wanted {
            throw MediaError.invalidData(file: path, reason: "truncated: header declares \(declared) frames, only \(total) decode")
        }
        guard total > 0 else {
            throw MediaError.invalidData(file: path, reason: "no audio frames")
        }
        return Decoded(samples: samples, channels: channels, sampleRate: rate)
    }

    /// Writes interleaved 16-bit PCM frames ([L, C]) as a WAV file at `path`.
    static func writePCM16(path: String, file: String, samples: [Int16], channels: Int, sampleRate: Int) throws {
        try write(path: path, file: file, format: Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16),
                  channels: channels, sampleRate: sampleRate, frames: samples.count / channels) { sf in
            samples.withUnsafeBufferPointer { sf_writef_short(sf, $0.baseAddress, sf_count_t(samples.count / channels)) }
        }
    }

    /// Writes interleaved float frames ([L, C]) as a 32-bit float WAV file at `path`.
    static func writeFloat(path: String, file: String, samples: [Float], channels: Int, sampleRate: Int) throws {
        try write(path: path, file: file, format: Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT),
                  channels: channels, sampleRate: sampleRate, frames: samples.count / channels) { sf in
            samples.withUnsafeBufferPointer { sf_writef_float(sf, $0.baseAddress, sf_count_t(samples.count / channels)) }
        }
    }

    private static func write(path: String, file: String, format: Int32, channels: Int, sampleRate: Int,
                              frames: Int, _ body: (OpaquePointer) -> sf_count_t) throws {
        var info = SF_INFO()
        info.channels = Int32(channels)
        info.samplerate = Int32(sampleRate)
        info.format = format
        guard sf_format_check(&info) != 0 else {
            throw MediaError.invalidArgument(file: file, reason: "libsndfile rejects \(channels) channels at \(sampleRate) Hz")
        }
        guard let sf = sf_open(path, Int32(SFM_WRITE), &info) else {
            throw MediaError.writeFailed(file: file, reason: String(cString: sf_strerror(nil)))
        }
        let written = body(sf)
        let writeError = sf_error(sf) != 0 ? String(cString: sf_strerror(sf)) : nil
        let closed = sf_close(sf)
        if let writeError { throw MediaError.writeFailed(file: file, reason: writeError) }
        guard written == sf_count_t(frames), closed == 0 else {
            throw MediaError.writeFailed(file: file, reason: "wrote \(written) of \(frames) frames")
        }
    }
}
