import Foundation
import Tensor
import TestSupport
import Video
import XCTest

/// Smooth moving colour gradients [F, C, H, W] in [-1, 1]: what a 4:2:0 codec handles well.
func smoothFrames(_ f: Int, _ c: Int, _ h: Int, _ w: Int) -> Tensor {
    var s: [Float] = []
    s.reserveCapacity(f * c * h * w)
    for i in 0..<f {
        for k in 0..<c {
            for y in 0..<h {
                for x in 0..<w {
                    let u = Double(x) / Double(w), v = Double(y) / Double(h), t = Double(i) / 10
                    s.append(Float(0.7 * sin(2 * .pi * (u + 0.5 * v + t) + Double(k) * 2.1) * cos(.pi * (v - 0.3 * u + 0.5 * t))))
                }
            }
        }
    }
    return Tensor(shape: [f, c, h, w], scalars: s)
}

/// PSNR in dB for signals in [-1, 1] (peak-to-peak 2), over the [.., H, W] window of `b` that
/// `a` covers (b may be padded).
func psnr(_ a: Tensor, _ b: Tensor) -> Double {
    let (f, c, h, w) = (a.shape[0], a.shape[1], a.shape[2], a.shape[3])
    let (hb, wb) = (b.shape[2], b.shape[3])
    var se = 0.0
    for i in 0..<(f * c) {
        for y in 0..<h {
            for x in 0..<w {
                let d = Double(a.data[(i * h + y) * w + x] - b.data[(i * hb + y) * wb + x])
                se += d * d
            }
        }
    }
    return 10 * log10(4 / (se / Double(f * c * h * w)))
}

final class VideoCodecTests: XCTestCase {
    var folder: TemporaryFolder!
    override func setUpWithError() throws { folder = try TemporaryFolder() }
    override func tearDown() { folder.remove() }

    func testMP4RoundTripOfSmoothFramesReaches35dBAtDefaultQuality() throws {
        let frames = smoothFrames(12, 3, 48, 64)
        let url = folder.file("smooth.mp4")
        let encoder = try VideoCodec.writeMP4(frames, fps: 12, to: url)
        let clip = try VideoCodec.read(url)
        XCTAssertEqual(clip.frames.shape, [12, 3, 48, 64])
        XCTAssertEqual(clip.fps, 12, accuracy: 1e-9)
        let p = psnr(frames, clip.frames)
        print("MP4 \(encoder) default quality PSNR: \(String(format: "%.2f", p)) dB")
        XCTAssertGreaterThanOrEqual(p, 35)
        XCTAssertEqual(folder.contents(), ["smooth.mp4"], "no temporary file left")
    }

    func testFFprobeReadsOurMP4AndTheMoovIsAtTheFront() throws {
        let url = folder.file("probe.mp4")
        let encoder = try VideoCodec.writeMP4(smoothFrames(9, 3, 32, 48), fps: 15, to: url)
        let info = try ffprobe(url)
        XCTAssertEqual(info["codec_name"], encoder == "libx264" ? "h264" : "mpeg4")
        XCTAssertEqual(info["pix_fmt"], "yuv420p")
        XCTAssertEqual(info["width"], "48")
        XCTAssertEqual(info["height"], "32")
        XCTAssertEqual(info["nb_read_frames"], "9", "every frame, the last one included")
        XCTAssertEqual(info["avg_frame_rate"], "15/1")
        let bytes = try Data(contentsOf: url)
        let moov = bytes.range(of: Data("moov".utf8))!.lowerBound, mdat = bytes.range(of: Data("mdat".utf8))!.lowerBound
        XCTAssertLessThan(moov, mdat, "faststart: moov before mdat")
    }

    func testOddSizesArePaddedToEven() throws {
        let frames = smoothFrames(4, 3, 33, 47)
        let url = folder.file("odd.mp4")
        try VideoCodec.writeMP4(frames, fps: 8, to: url)
        let clip = try VideoCodec.read(url)
        XCTAssertEqual(clip.frames.shape, [4, 3, 34, 48])
        XCTAssertGreaterThanOrEqual(psnr(frames, clip.frames), 35)
    }

    func testGrayFramesAndTheMPEG4Fallback() throws {
        let frames = smoothFrames(6, 1, 32, 32)
        let url = folder.file("gray.mp4")
        let name = try VideoCodec.writeMP4(frames, fps: 10, to: url, encoder: .mpeg4)
        XCTAssertEqual(name, "mpeg4")
        let clip = try VideoCodec.read(url, mode: .gray)
        XCTAssertEqual(clip.frames.shape, [6, 1, 32, 32])
        let p = psnr(frames, clip.frames)
        print("MP4 mpeg4 (q 3) gray PSNR: \(String(format: "%.2f", p)) dB")
        XCTAssertGreaterThanOrEqual(p, 30)
        XCTAssertEqual(try ffprobe(url)["codec_name"], "mpeg4")
    }

    /// Frame i is a flat gray of level i: resampled reads show which source frames they hold.
    func testRequestedFrameRateSizeAndFrameCap() throws {
        let n = 10
        var s: [Float] = []
        for i in 0..<n { s += Array(repeating: Float(i) / 5 - 0.9, count: 16 * 16) }
        let url = folder.file("levels.mp4")
        try VideoCodec.writeMP4(Tensor(shape: [n, 1, 16, 16], scalars: s), fps: 10, to: url, crf: 10)
        func levels(_ clip: VideoClip) -> [Int] {
            let plane = clip.frames.shape[1] * clip.frames.shape[2] * clip.frames.shape[3]
            return (0..<clip.frames.shape[0]).map { i in Int(((clip.frames.data[i * plane + plane / 2] + 0.9) * 5).rounded()) }
        }
        XCTAssertEqual(levels(try VideoCodec.read(url, mode: .gray)), Array(0..<10))
        let half = try VideoCodec.read(url, fps: 5, mode: .gray)
        XCTAssertEqual(half.fps, 5)
        XCTAssertEqual(levels(half), [0, 2, 4, 6, 8])
        XCTAssertEqual(levels(try VideoCodec.read(url, fps: 20, mode: .gray)), (0..<10).flatMap { [$0, $0] })
        let small = try VideoCodec.read(url, width: 8, height: 6, maxFrames: 3)
        XCTAssertEqual(small.frames.shape, [3, 3, 6, 8])
        XCTAssertEqual(try VideoCodec.read(url, width: 8).frames.shape, [10, 3, 8, 8], "aspect kept")
    }

    func testAnimatedGIF() throws {
        let gray = smoothFrames(6, 1, 20, 30)
        let url = folder.file("gray.gif")
        try VideoCodec.writeGIF(gray, fps: 10, to: url)
        let back = try VideoCodec.read(url, mode: .gray)
        XCTAssertEqual(back.frames.shape, [6, 1, 20, 30])
        XCTAssertGreaterThanOrEqual(psnr(gray, back.frames), 45, "gray GIF is lossless up to 8-bit rounding")
        let info = try ffprobe(url)
        XCTAssertEqual(info["codec_name"], "gif")
        XCTAssertEqual(info["nb_read_frames"], "6")

        let rgb = smoothFrames(5, 3, 24, 36)
        let url2 = folder.file("rgb.gif")
        try VideoCodec.writeGIF(rgb, fps: 8, to: url2)
        let back2 = try VideoCodec.read(url2)
        XCTAssertEqual(back2.frames.shape, [5, 3, 24, 36])
        XCTAssertGreaterThanOrEqual(psnr(rgb, back2.frames), 22, "252-colour palette with ordered dither")
        XCTAssertEqual(try ffprobe(url2)["nb_read_frames"], "5")
    }

    /// Containers and codecs made by the ffmpeg command (skipped without it).
    func testReadsWhatFFmpegWrites() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg") else { throw XCTSkip("ffmpeg missing") }
        let cases: [(String, [String])] = [
            ("vp8.webm", ["-c:v", "libvpx", "-b:v", "500k"]),
            ("vp9.webm", ["-c:v", "libvpx-vp9", "-b:v", "500k", "-deadline", "realtime"]),
            ("mpeg4.avi", ["-c:v", "mpeg4"]),
            ("h264-yuv444.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-preset", "ultrafast"]),
            ("ffv1.mkv", ["-c:v", "ffv1"]),
            ("anim.gif", []),
        ]
        for (name, args) in cases {
            let url = folder.file(name)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
            p.arguments = ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=10:duration=1"] + args + [url.path]
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { XCTFail("ffmpeg could not write \(name)"); continue }
            let clip = try VideoCodec.read(url)
            XCTAssertEqual(clip.frames.shape, [10, 3, 24, 32], name)
            XCTAssertEqual(clip.fps, 10, accuracy: 1e-6, name)
            let s = clip.frames.scalars
            XCTAssertLessThan(s.min()!, -0.8, "\(name) has dark pixels")
            XCTAssertGreaterThan(s.max()!, 0.8, "\(name) has bright pixels")
        }
    }

    func testEveryCorruptFileThrowsAMediaErrorNamingTheFile() throws {
        let files = corpusFiles("Corrupt")
        XCTAssertGreaterThanOrEqual(files.count, 10)
        for url in files {
            do {
                let clip = try VideoCodec.read(url)
                XCTFail("\(url.lastPathComponent) was accepted: \(clip.frames.shape)")
            } catch let e as MediaError {
                XCTAssertTrue(e.description.contains(url.lastPathComponent), "\(e)")
            }
        }
    }

    func testBadArgumentsAndFailedWritesLeaveTheOldFile() throws {
        let url = folder.file("keep.mp4")
        try VideoCodec.writeMP4(smoothFrames(2, 3, 16, 16), fps: 5, to: url)
        let before = try Data(contentsOf: url)
        XCTAssertThrowsError(try VideoCodec.writeMP4(smoothFrames(2, 3, 16, 16), fps: 5, to: url, crf: 99)) { e in
            guard case MediaError.invalidArgument = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try VideoCodec.writeMP4(smoothFrames(2, 3, 16, 16), fps: 0, to: url))
        XCTAssertThrowsError(try VideoCodec.writeGIF(smoothFrames(2, 3, 16, 16), fps: 5, to: folder.file("missing/x.gif")))
        XCTAssertEqual(try Data(contentsOf: url), before)
        XCTAssertEqual(folder.contents(), ["keep.mp4"])
        XCTAssertThrowsError(try VideoCodec.read(url, fps: -1))
        XCTAssertThrowsError(try VideoCodec.read(url, width: 0))
        XCTAssertThrowsError(try VideoCodec.read(folder.file("nope.mp4"))) { e in
            guard case MediaError.cannotOpen = e else { return XCTFail("\(e)") }
        }
    }

    func testMutatedFilesNeverCrash() throws {
        let mp4 = folder.file("base.mp4"), gif = folder.file("base.gif")
        try VideoCodec.writeMP4(smoothFrames(4, 3, 16, 16), fps: 5, to: mp4, preset: .ultrafast)
        try VideoCodec.writeGIF(smoothFrames(3, 3, 12, 12), fps: 5, to: gif)
        for (url, seed) in [(mp4, UInt64(31)), (gif, 32)] {
            let bytes = [UInt8](try Data(contentsOf: url))
            assertMutationsNeverCrash(bytes, count: 150, seed: seed, in: folder, ext: url.pathExtension,
                                      isTypedError: { $0 is MediaError }) { _ = try VideoCodec.read($0) }
        }
    }

    func testLimitsAreChecked() throws {
        let url = folder.file("l.mp4")
        try VideoCodec.writeMP4(smoothFrames(4, 3, 32, 32), fps: 5, to: url)
        XCTAssertThrowsError(try VideoCodec.read(url, limits: .init(maxDimension: 16))) { e in
            guard case MediaError.limitExceeded = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try VideoCodec.read(url, limits: .init(maxFrames: 3)))
        XCTAssertThrowsError(try VideoCodec.read(url, limits: .init(maxBytes: 32 * 32 * 3 * 2)))
        XCTAssertEqual(try VideoCodec.read(url, maxFrames: 3, limits: .init(maxFrames: 3)).frames.shape[0], 3)
        // A header's dimensions are refused as a limit before FFmpeg probes (decodes) the
        // stream: the GIF that says 65535×65535 never reaches a decoder.
        let gif = corpusFiles("Corrupt").first { $0.lastPathComponent == "huge.gif" }!
        XCTAssertThrowsError(try VideoCodec.read(gif)) { e in
            guard case MediaError.limitExceeded = e, "\(e)".contains("65535") else { return XCTFail("\(e)") }
        }
    }
}
