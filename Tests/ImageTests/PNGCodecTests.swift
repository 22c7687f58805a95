import Foundation
import Image
import Tensor
import TestSupport
import XCTest

final class PNGCodecTests: XCTestCase {
    var folder: TemporaryFolder!
    override func setUpWithError() throws { folder = try TemporaryFolder() }
    override func tearDown() { folder.remove() }

    /// Deterministic bytes that touch every value 0...255.
    func pattern(_ count: Int, seed: Int = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ seed &* 31 &+ ($0 >> 3)) }
    }

    func testEightBitRoundTripIsExactForEveryChannelCount() throws {
        for channels in 1...4 {
            let p = Pixels(width: 13, height: 7, channels: channels, bytes: pattern(13 * 7 * channels, seed: channels))
            let url = folder.file("c\(channels).png")
            try PNGCodec.write(p, to: url)
            XCTAssertEqual(try PNGCodec.readPixels(url, mode: .keep), p, "channels \(channels)")
        }
        XCTAssertEqual(folder.contents(), ["c1.png", "c2.png", "c3.png", "c4.png"], "no temporary files left")
    }

    func testTensorRoundTripIsExactOnTheEightBitGrid() throws {
        // [3, 5, 9] values already on the 8-bit grid come back bit for bit.
        let bytes = pattern(3 * 5 * 9)
        let t = Tensor(shape: [3, 5, 9], scalars: bytes.map { Float($0) * (2.0 / 255.0) - 1 })
        let url = folder.file("t.png")
        try PNGCodec.write(t, to: url)
        let back = try PNGCodec.read(url, mode: .rgb)
        XCTAssertEqual(back.shape, [3, 5, 9])
        XCTAssertEqual(back.scalars, t.scalars)
    }

    func testWriteClipsAndRoundsOutOfRangeValues() throws {
        let t = Tensor(shape: [1, 1, 5], scalars: [-3, 5, .nan, 0, 1.0 / 255])
        let url = folder.file("clip.png")
        try PNGCodec.write(t, to: url)
        XCTAssertEqual(try PNGCodec.readPixels(url).bytes, [0, 255, 0, 128, 128])
    }

    func testGrayAndRGBConversions() throws {
        let gray = Pixels(width: 4, height: 2, channels: 1, bytes: [0, 50, 100, 150, 200, 250, 255, 1])
        let url = folder.file("g.png")
        try PNGCodec.write(gray, to: url)
        let rgb = try PNGCodec.readPixels(url, mode: .rgb)
        XCTAssertEqual(rgb.channels, 3)
        XCTAssertEqual(rgb.bytes, gray.bytes.flatMap { [$0, $0, $0] }, "gray is replicated")
        // Gray-coloured RGB goes back to the same gray.
        let url2 = folder.file("rgbgray.png")
        try PNGCodec.write(rgb, to: url2)
        let g = try PNGCodec.readPixels(url2, mode: .gray)
        XCTAssertEqual(g.channels, 1)
        for (a, b) in zip(g.bytes, gray.bytes) { XCTAssertLessThanOrEqual(abs(Int(a) - Int(b)), 1) }
        // Fully transparent pixels become the background; opaque ones keep their colour.
        let rgba = Pixels(width: 2, height: 1, channels: 4, bytes: [10, 20, 30, 0, 10, 20, 30, 255])
        let url3 = folder.file("rgba.png")
        try PNGCodec.write(rgba, to: url3)
        XCTAssertEqual(try PNGCodec.readPixels(url3, mode: .rgb, background: 255).bytes, [255, 255, 255, 10, 20, 30])
        XCTAssertEqual(try PNGCodec.readPixels(url3, mode: .rgb, background: 0).bytes, [0, 0, 0, 10, 20, 30])
    }

    /// Every colour type and bit depth from Formats/ (made by Tests/References/make-png-formats.py).
    func testReadsEveryColourTypeAndBitDepth() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Formats")
        let (w, h) = (13, 7)
        func p8(_ x: Int, _ y: Int, _ c: Int) -> UInt8 { UInt8((x * 37 + y * 11 + c * 50) & 255) }
        func expect(_ channels: Int, _ f: (Int, Int, Int) -> UInt8) -> Pixels {
            var b: [UInt8] = []
            for y in 0..<h { for x in 0..<w { for c in 0..<channels { b.append(f(x, y, c)) } } }
            return Pixels(width: w, height: h, channels: channels, bytes: b)
        }
        let pal: (Int) -> [UInt8] = { i in [UInt8(i * 16), UInt8(255 - i * 16), UInt8(i * 7)] }
        let cases: [(String, Pixels)] = [
            ("gray1", expect(1) { x, y, _ in UInt8(((x + y) & 1) * 255) }),
            ("gray2", expect(1) { x, y, _ in UInt8(((x + y) & 3) * 85) }),
            ("gray4", expect(1) { x, y, _ in UInt8(((x + 3 * y) & 15) * 17) }),
            ("gray8", expect(1, p8)), ("gray16", expect(1, p8)),
            ("gray-alpha8", expect(2, p8)), ("gray-alpha16", expect(2, p8)),
            ("rgb8", expect(3, p8)), ("rgb16", expect(3, p8)),
            ("rgba8", expect(4, p8)), ("rgba16", expect(4, p8)),
            ("palette8", expect(3) { x, y, c in pal((x + y) & 15)[c] }),
            ("palette2", expect(3) { x, y, c in pal((x + y) & 3)[c] }),
            ("palette8-trns", expect(4) { x, y, c in c == 3 ? UInt8(((x + y) & 15) * 17) : pal((x + y) & 15)[c] }),
        ]
        for (name, want) in cases {
            let got = try PNGCodec.readPixels(dir.appendingPathComponent(name + ".png"), mode: .keep)
            XCTAssertEqual(got.channels, want.channels, name)
            XCTAssertEqual(got.width, w, name)
            XCTAssertEqual(got.height, h, name)
            let worst = zip(got.bytes, want.bytes).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertEqual(worst, 0, "\(name): largest sample difference")
            // Every file also reads as RGB and gray tensors of the right shape.
            XCTAssertEqual(try PNGCodec.read(dir.appendingPathComponent(name + ".png"), mode: .rgb).shape, [3, h, w])
            XCTAssertEqual(try PNGCodec.read(dir.appendingPathComponent(name + ".png"), mode: .gray).shape, [1, h, w])
        }
    }

    func testGridLayoutAndPadding() throws {
        // 5 images [5, 1, 2, 3] of value i/10, 2 columns, padding 1 -> [1, 3*3+1, 2*4+1].
        var s: [Float] = []
        for i in 0..<5 { s += Array(repeating: Float(i) / 10, count: 6) }
        let grid = ImageGrid.make(Tensor(shape: [5, 1, 2, 3], scalars: s), columns: 2, padding: 1, padValue: -1)
        XCTAssertEqual(grid.shape, [1, 10, 9])
        let g = grid.scalars
        XCTAssertEqual(g[0], -1)                        // border
        XCTAssertEqual(g[1 * 9 + 1], 0)                 // image 0 top-left
        XCTAssertEqual(g[1 * 9 + 5], 0.1)               // image 1 top-left
        XCTAssertEqual(g[4 * 9 + 1], 0.2)               // image 2
        XCTAssertEqual(g[7 * 9 + 1], 0.4)               // image 4
        XCTAssertEqual(g[7 * 9 + 5], -1)                // empty cell
        let url = folder.file("grid.png")
        try ImageGrid.write(Tensor(shape: [5, 1, 2, 3], scalars: s), columns: 2, padding: 1, to: url)
        XCTAssertEqual(try PNGCodec.read(url, mode: .keep).shape, [1, 10, 9])
        XCTAssertThrowsError(try ImageGrid.write(Tensor.zeros([1, 1, 2, 2]), columns: 0, to: folder.file("bad.png")))
    }

    func testFFprobeReadsWhatWeWrite() throws {
        let url = folder.file("probe.png")
        try PNGCodec.write(Pixels(width: 31, height: 17, channels: 3, bytes: pattern(31 * 17 * 3)), to: url)
        let info = try ffprobe(url)
        XCTAssertEqual(info["codec_name"], "png")
        XCTAssertEqual(info["width"], "31")
        XCTAssertEqual(info["height"], "17")
        XCTAssertEqual(info["pix_fmt"], "rgb24")
    }

    func testEveryCorruptFileThrowsAMediaErrorNamingTheFile() throws {
        let files = corpusFiles("Corrupt")
        XCTAssertGreaterThanOrEqual(files.count, 10)
        for url in files {
            do {
                _ = try PNGCodec.read(url)
                XCTFail("\(url.lastPathComponent) was accepted")
            } catch let e as MediaError {
                XCTAssertTrue(e.description.contains(url.lastPathComponent), "\(e)")
            }
        }
    }

    func testMissingFileAndFailedWriteLeaveNothingBehind() throws {
        XCTAssertThrowsError(try PNGCodec.read(folder.file("nope.png"))) { e in
            guard case MediaError.cannotOpen = e else { return XCTFail("\(e)") }
        }
        // A destination in a missing folder fails cleanly.
        XCTAssertThrowsError(try PNGCodec.write(Tensor.zeros([3, 2, 2]), to: folder.file("missing/x.png")))
        // A failed write keeps the old file intact and leaves no temporary file.
        let url = folder.file("keep.png")
        let old = Pixels(width: 2, height: 1, channels: 1, bytes: [1, 2])
        try PNGCodec.write(old, to: url)
        XCTAssertThrowsError(try PNGCodec.write(Pixels(width: 0, height: 0, channels: 1, bytes: []), to: url))
        XCTAssertEqual(try PNGCodec.readPixels(url), old)
        XCTAssertEqual(folder.contents(), ["keep.png"])
    }

    func testMutatedFilesNeverCrash() throws {
        let url = folder.file("base.png")
        try PNGCodec.write(Pixels(width: 16, height: 12, channels: 4, bytes: pattern(16 * 12 * 4)), to: url)
        let bytes = [UInt8](try Data(contentsOf: url))
        let rejected = assertMutationsNeverCrash(bytes, count: 300, seed: 11, in: folder, ext: "png",
                                                 isTypedError: { $0 is MediaError }) { _ = try PNGCodec.read($0) }
        XCTAssertGreaterThan(rejected, 100)
    }

    func testLimitsAreCheckedBeforeAllocating() throws {
        let url = folder.file("big.png")
        try PNGCodec.write(Pixels(width: 40, height: 30, channels: 1, bytes: pattern(1200)), to: url)
        XCTAssertThrowsError(try PNGCodec.read(url, limits: .init(maxDimension: 32))) { e in
            guard case MediaError.limitExceeded = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try PNGCodec.read(url, limits: .init(maxPixels: 1000)))
    }
}
