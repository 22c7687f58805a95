import Audio
import Foundation
import Tensor
import TestSupport
import XCTest

/// [C, L] sinusoids: channel c has frequency f·(c+1) and amplitude `amp`.
func sines(channels: Int, length: Int, rate: Int, frequency: Double, amp: Float = 0.8) -> Tensor {
    var s: [Float] = []
    for c in 0..<channels {
        for i in 0..<length {
            s.append(amp * Float(sin(2 * Double.pi * frequency * Double(c + 1) * Double(i) / Double(rate))))
        }
    }
    return Tensor(shape: [channels, length], scalars: s)
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

final class AudioCodecTests: XCTestCase {
    var folder: TemporaryFolder!
    override func setUpWithError() throws { folder = try TemporaryFolder() }
    override func tearDown() { folder.remove() }

    func testPCM16RoundTripIsWithinOneLSB() throws {
        var t = sines(channels: 2, length: 4410, rate: 44100, frequency: 441, amp: 0.9).scalars
        t[0] = 1; t[1] = -1; t[2] = 1.5; t[3] = -7   // full scale and beyond: clipped
        let clip = AudioClip(samples: Tensor(shape: [2, 4410], scalars: t), sampleRate: 44100)
        let url = folder.file("a.wav")
        try AudioCodec.write(clip, to: url, format: .pcm16)
        let back = try AudioCodec.read(url)
        XCTAssertEqual(back.sampleRate, 44100)
        XCTAssertEqual(back.samples.shape, [2, 4410])
        let clipped = t.map { min(max($0, -1), 32767.0 / 32768) }
        XCTAssertLessThanOrEqual(maxAbsDiff(back.samples.scalars, clipped), 0.5 / 32768 + 1e-7)
        XCTAssertLessThanOrEqual(maxAbsDiff(back.samples.scalars, t.map { min(max($0, -1), 1) }), 1.0 / 32768 + 1e-7)
        XCTAssertEqual(folder.contents(), ["a.wav"], "no temporary file left")
    }

    func testValuesOnTheSixteenBitGridAreExact() throws {
        let s = (0..<1000).map { Float(($0 * 131) % 65536 - 32768) / 32768 }
        let clip = AudioClip(samples: Tensor(shape: [1, 1000], scalars: s), sampleRate: 8000)
        let url = folder.file("grid.wav")
        try AudioCodec.write(clip, to: url)
        XCTAssertEqual(try AudioCodec.read(url).samples.scalars, s)
    }

    func testFloat32RoundTripIsExactAndNaNBecomesZero() throws {
        var s = sines(channels: 3, length: 500, rate: 22050, frequency: 1000).scalars
        s[7] = .nan; s[8] = 1.75
        let url = folder.file("f.wav")
        try AudioCodec.write(AudioClip(samples: Tensor(shape: [3, 500], scalars: s), sampleRate: 22050), to: url, format: .float32)
        let back = try AudioCodec.read(url)
        var want = s
        want[7] = 0
        XCTAssertEqual(back.samples.scalars, want)
    }

    func testDitherIsSeededAndSmall() throws {
        let t = sines(channels: 1, length: 2000, rate: 8000, frequency: 100, amp: 0.01)
        let clip = AudioClip(samples: t, sampleRate: 8000)
        let (a, b, c) = (folder.file("a.wav"), folder.file("b.wav"), folder.file("c.wav"))
        try AudioCodec.write(clip, to: a, format: .pcm16Dithered(seed: 7))
        try AudioCodec.write(clip, to: b, format: .pcm16Dithered(seed: 7))
        try AudioCodec.write(clip, to: c, format: .pcm16)
        let (da, db, dc) = (try AudioCodec.read(a).samples.scalars, try AudioCodec.read(b).samples.scalars, try AudioCodec.read(c).samples.scalars)
        XCTAssertEqual(da, db, "same seed, same bits")
        XCTAssertNotEqual(da, dc, "dither changes the rounding")
        XCTAssertLessThan(maxAbsDiff(da, t.scalars), 1.5 / 32768 + 1e-7, "TPDF of ±1 LSB plus rounding")
        let meanError = zip(da, t.scalars).map { Double($0 - $1) }.reduce(0, +) / 2000 * 32768
        XCTAssertLessThan(abs(meanError), 0.1, "unbiased")
    }

    func testMonoIsTheMeanOfTheChannels() {
        let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 3, 4, -3])
        let m = AudioClip(samples: t, sampleRate: 100).mono()
        XCTAssertEqual(m.samples.shape, [1, 3])
        XCTAssertEqual(m.samples.scalars, [2, 3, 0])
    }

    func testFFprobeReadsWhatWeWrite() throws {
        let clip = AudioClip(samples: sines(channels: 2, length: 800, rate: 16000, frequency: 300), sampleRate: 16000)
        let (a, b) = (folder.file("s16.wav"), folder.file("f32.wav"))
        try AudioCodec.write(clip, to: a)
        try AudioCodec.write(clip, to: b, format: .float32)
        let ia = try ffprobe(a), ib = try ffprobe(b)
        XCTAssertEqual(ia["codec_name"], "pcm_s16le")
        XCTAssertEqual(ib["codec_name"], "pcm_f32le")
        for i in [ia, ib] {
            XCTAssertEqual(i["sample_rate"], "16000")
            XCTAssertEqual(i["channels"], "2")
            XCTAssertEqual(i["duration_ts"], "800")
        }
    }

    /// Other formats, converted from our WAV by the ffmpeg command (skipped without it).
    func testReadsOtherFormatsLibsndfileSupports() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg") else { throw XCTSkip("ffmpeg missing") }
        let t = sines(channels: 2, length: 8000, rate: 16000, frequency: 250, amp: 0.5)
        let src = folder.file("src.wav")
        try AudioCodec.write(AudioClip(samples: t, sampleRate: 16000), to: src)
        let cases: [(String, [String], Float)] = [
            ("u8.wav", ["-c:a", "pcm_u8"], 1.0 / 128),
            ("s24.wav", ["-c:a", "pcm_s24le"], 1e-6),
            ("s32.wav", ["-c:a", "pcm_s32le"], 1e-6),
            ("f64.wav", ["-c:a", "pcm_f64le"], 1e-6),
            ("x.flac", [], 1e-6),
            ("x.aiff", [], 1e-6),
            ("x.ogg", ["-c:a", "libvorbis", "-q:a", "6"], 0.05),
        ]
        for (name, args, tolerance) in cases {
            let out = folder.file(name)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
            p.arguments = ["-v", "error", "-y", "-i", src.path] + args + [out.path]
            try p.run()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, name)
            let clip = try AudioCodec.read(out)
            XCTAssertEqual(clip.sampleRate, 16000, name)
            XCTAssertEqual(clip.channels, 2, name)
            let want = try AudioCodec.read(src).samples.scalars
            if name.hasSuffix(".ogg") {
                // Lossy, with encoder delay trimmed: compare the middle by energy of the error.
                XCTAssertEqual(clip.length, 8000, accuracy: 1200, name)
                let n = min(clip.length, 8000)
                let got = clip.samples.scalars
                var err = 0.0, sig = 0.0
                for i in 1000..<(n - 1000) { err += Double((got[i] - want[i]) * (got[i] - want[i])); sig += Double(want[i] * want[i]) }
                XCTAssertGreaterThan(10 * log10(sig / err), 20, "\(name) SNR")
            } else {
                XCTAssertEqual(clip.length, 8000, name)
                XCTAssertLessThanOrEqual(maxAbsDiff(clip.samples.scalars, want), tolerance, name)
            }
        }
    }

    func testEveryCorruptFileThrowsAMediaErrorNamingTheFile() throws {
        let files = corpusFiles("Corrupt")
        XCTAssertGreaterThanOrEqual(files.count, 10)
        for url in files {
            do {
                let clip = try AudioCodec.read(url)
                XCTFail("\(url.lastPathComponent) was accepted: \(clip.samples.shape) at \(clip.sampleRate) Hz")
            } catch let e as MediaError {
                XCTAssertTrue(e.description.contains(url.lastPathComponent), "\(e)")
            }
        }
    }

    func testFailedWritesLeaveTheOldFileAndNoTemporaryFile() throws {
        let url = folder.file("keep.wav")
        let old = AudioClip(samples: Tensor(shape: [1, 4], scalars: [0, 0.5, -0.5, 0.25]), sampleRate: 8000)
        try AudioCodec.write(old, to: url)
        XCTAssertThrowsError(try AudioCodec.write(AudioClip(samples: Tensor.zeros([100, 4]), sampleRate: 8000), to: url)) { e in
            guard case MediaError.limitExceeded = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try AudioCodec.write(AudioClip(samples: Tensor.zeros([1, 4]), sampleRate: 10_000_000), to: url))
        XCTAssertThrowsError(try AudioCodec.write(old, to: folder.file("missing/x.wav")))
        XCTAssertEqual(try AudioCodec.read(url).samples.scalars, old.samples.scalars)
        XCTAssertEqual(folder.contents(), ["keep.wav"])
        XCTAssertThrowsError(try AudioCodec.read(folder.file("nope.wav"))) { e in
            guard case MediaError.cannotOpen = e else { return XCTFail("\(e)") }
        }
    }

    func testMutatedFilesNeverCrash() throws {
        for (format, seed) in [(AudioCodec.SampleFormat.pcm16, UInt64(21)), (.float32, 22)] {
            let url = folder.file("base.wav")
            try AudioCodec.write(AudioClip(samples: sines(channels: 2, length: 300, rate: 8000, frequency: 440), sampleRate: 8000),
                                 to: url, format: format)
            let bytes = [UInt8](try Data(contentsOf: url))
            assertMutationsNeverCrash(bytes, count: 200, seed: seed, in: folder, ext: "wav",
                                      isTypedError: { $0 is MediaError }) { _ = try AudioCodec.read($0) }
        }
    }

    func testLimitsAreChecked() throws {
        let url = folder.file("l.wav")
        try AudioCodec.write(AudioClip(samples: Tensor.zeros([2, 100]), sampleRate: 16000), to: url)
        XCTAssertThrowsError(try AudioCodec.read(url, limits: .init(maxSampleRate: 8000)))
        XCTAssertThrowsError(try AudioCodec.read(url, limits: .init(maxChannels: 1)))
        XCTAssertThrowsError(try AudioCodec.read(url, limits: .init(maxSamples: 150)))
    }
}
