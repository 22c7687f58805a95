import XCTest
import Foundation
import Tensor
import Image
import Video
import Evaluation
import TestSupport

/// Ten synthetic 14×14 items, two per class for 5 classes: a bright square with a class-dependent
/// hole, so an item's pixels are easy to find.
func syntheticItems(side: Int = 14) -> MovingFashion.ItemImages {
    var px: [Float] = []
    var labels: [Int] = []
    for i in 0..<10 {
        for y in 0..<side {
            for x in 0..<side {
                let edge = x == 0 || y == 0 || x == side - 1 || y == side - 1
                px.append(edge ? 1 : (x + y + i) % 5 == 0 ? -1 : 0.6)
            }
        }
        labels.append(i / 2)
    }
    return MovingFashion.ItemImages(side: side, pixels: px, labels: labels)
}

final class MovingFashionTests: XCTestCase {
    func testClipsStayInsideTheCanvasBounceAndDependOnlyOnTheirNumber() {
        let items = syntheticItems()
        let pools = items.pools(classes: 5)
        XCTAssertEqual(pools[3], [6, 7])
        var o = MovingFashion.Options()
        o.speed = 2...2.5  // 15 steps of ≥ 2 px in an 18-px box: every item meets a wall
        var bounces = 0
        for k in 0..<12 {
            let c = MovingFashion.clip(index: k, label: 3, pool: pools[3], items: items, options: o)
            XCTAssertEqual(c.frames.shape, [16, 1, 32, 32])
            XCTAssertEqual(c.label, 3)
            XCTAssert(c.items.allSatisfy { pools[3].contains($0) } && (1...2).contains(c.items.count))
            for path in c.positions {
                XCTAssertEqual(path.count, 16)
                for p in path { XCTAssert((0...18).contains(p.x) && (0...18).contains(p.y), "\(p) outside the canvas") }
                // A bounce: the step along an axis changes sign, next to a wall.
                for f in 1..<15 {
                    for (a, b, c2) in [(path[f - 1].x, path[f].x, path[f + 1].x), (path[f - 1].y, path[f].y, path[f + 1].y)] {
                        if (b - a) * (c2 - b) < 0 {
                            bounces += 1
                            XCTAssert(Swift.min(b, 18 - b) <= 3, "turned at \(b), far from the walls")
                        }
                    }
                }
                // Constant speed: no step longer than 2.5 px along the path, give or take rounding.
                for f in 1..<16 {
                    let d = Swift.abs(path[f].x - path[f - 1].x) + Swift.abs(path[f].y - path[f - 1].y)
                    XCTAssert(d <= 5, "step of \(d) px")
                }
            }
            // Pixels above the background lie inside the items' boxes, and each box holds its item.
            for f in 0..<16 {
                let frame = c.frames.data + f * 1024
                for y in 0..<32 {
                    for x in 0..<32 where frame[y * 32 + x] > -1 {
                        XCTAssert(c.positions.contains { (x - $0[f].x) >= 0 && (x - $0[f].x) < 14 && (y - $0[f].y) >= 0 && (y - $0[f].y) < 14 },
                                  "lit pixel (\(x), \(y)) outside every item in frame \(f)")
                    }
                }
                for p in c.positions { XCTAssertEqual(frame[p[f].y * 32 + p[f].x], 1, "item corner") }
            }
            let again = MovingFashion.clip(index: k, label: 3, pool: pools[3], items: items, options: o)
            XCTAssertEqual(again.frames.scalars, c.frames.scalars)
        }
        XCTAssertGreaterThan(bounces, 4)
        let a = MovingFashion.clip(index: 0, label: 3, pool: pools[3], items: items, options: o)
        let b = MovingFashion.clip(index: 1, label: 3, pool: pools[3], items: items, options: o)
        XCTAssertNotEqual(a.frames.scalars, b.frames.scalars)
        var bad = o
        bad.size = 12
        XCTAssertThrowsError(try bad.validate())
    }

    /// Written as H.264 yuv420p through our codec, read back by our folder reader.
    func testWrittenClipsAndTheFolderReader() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        var o = MovingFashion.Options()
        o.frames = 8
        let items = syntheticItems()
        let names = ["a", "b", "c", "d", "e"]
        XCTAssertEqual(try MovingFashion.write(to: tmp.url, perClass: 2, options: o, items: items, classNames: names), 10)
        XCTAssertEqual(try MovingFashion.write(to: tmp.url, perClass: 2, options: o, items: items, classNames: names), 0, "kept")
        let file = tmp.url.appendingPathComponent("c/00001.mp4")
        let probe = try ffprobe(file)
        XCTAssert(["h264", "mpeg4"].contains(probe["codec_name"] ?? ""), "\(probe)")
        if probe["codec_name"] == "h264" { XCTAssertEqual(probe["pix_fmt"], "yuv420p") }
        XCTAssertEqual(probe["nb_read_frames"], "8")
        XCTAssertEqual(probe["width"], "32")

        // A corrupt file is skipped with a warning, counted, and replaced in batches.
        try Data("not a video".utf8).write(to: tmp.url.appendingPathComponent("a/00000.mp4"))
        let folder = try VideoFolder(tmp.url, frames: 8, size: 32, fps: 8)
        var warnings: [String] = []
        folder.warn = { warnings.append($0) }
        XCTAssertEqual(folder.classNames, names)
        XCTAssertEqual(folder.channels, 1, "gray clips are detected as gray")
        XCTAssertEqual(folder.count, 10)
        let (x, labels) = try folder.batch([0, 5, 0])
        XCTAssertEqual(x.shape, [3, 1, 8, 32, 32])
        XCTAssertEqual(labels, [0, 2, 0], "the unreadable clip 0 is replaced by clip 1, of the same class")
        XCTAssertEqual(folder.skipped.count, 1)
        XCTAssertEqual(warnings.count, 1, "warned once")
        XCTAssert(warnings[0].contains("00000.mp4"), warnings[0])
        // What was written is what is read, within the codec's loss.
        let c = MovingFashion.clip(index: 1, label: 2, pool: items.pools(classes: 5)[2], items: items, options: o)
        let read = Tensor(shape: [1, 8, 32, 32], scalars: Array(x.scalars[(8 * 1024)..<(16 * 1024)]))
        var worst: Float = 0
        for f in 0..<8 { for p in 0..<1024 { worst = Swift.max(worst, Swift.abs(read.data[f * 1024 + p] - c.frames.data[f * 1024 + p])) } }
        XCTAssertLessThan(worst, 0.25)
        // One-frame clips for joint training.
        let (img, l2) = try folder.frameBatch([5, 5], frameIndices: [0, 7])
        XCTAssertEqual(img.shape, [2, 1, 1, 32, 32])
        XCTAssertEqual(Array(img.scalars[1024...]), Array(read.scalars[(7 * 1024)...]))
        XCTAssertEqual(l2, [2, 2])
    }

    /// Time and space resampling: a 16 fps clip read at 8 fps keeps every other frame; a short
    /// clip holds its last frame; a 48×40 clip is centre-cropped and resized.
    func testDecodeResamplesTimeAndSpace() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        // Frame k is uniformly bright at level k/8 − 0.9.
        let frames = Tensor.zeros([6, 1, 40, 48])
        for k in 0..<6 { for p in 0..<(40 * 48) { frames.data[k * 40 * 48 + p] = Float(k) / 4 - 0.9 } }
        let url = tmp.file("ramp.mp4")
        try VideoCodec.writeMP4(frames, fps: 16, to: url, crf: 0)
        let t = try VideoFolder.decode(url, frames: 5, size: 16, channels: 1, fps: 8)
        XCTAssertEqual(t.shape, [1, 5, 16, 16])
        let levels = (0..<5).map { t.data[$0 * 256 + 100] }
        for (got, want) in zip(levels, [0, 2, 4, 4, 4].map { Float($0) / 4 - 0.9 }) { XCTAssertEqual(got, want, accuracy: 0.03) }
    }
}

final class VideoMetricsTests: XCTestCase {
    /// A 3×3 square moving 2 px per frame: its centre of mass moves smoothly (roughness 0); a
    /// square jumping about is rough; an empty frame has no centre.
    func testCentreOfMassTracks() {
        func clip(_ xs: [Int?]) -> Tensor {
            let t = Tensor.full([xs.count, 1, 16, 16], -1)
            for (f, x) in xs.enumerated() {
                guard let x else { continue }
                for y in 5..<8 { for dx in 0..<3 { t.data[f * 256 + y * 16 + x + dx] = 1 } }
            }
            return t
        }
        let smooth = VideoMetrics.centerOfMassTrack(clip([0, 2, 4, 6, 8]))
        XCTAssertEqual(smooth[0]!.x, 1, accuracy: 1e-9)
        XCTAssertEqual(smooth[0]!.y, 6, accuracy: 1e-9)
        XCTAssertEqual(VideoMetrics.roughness(smooth)!, 0, accuracy: 1e-9)
        XCTAssertEqual(VideoMetrics.speed(smooth)!, 2, accuracy: 1e-9)
        let rough = VideoMetrics.centerOfMassTrack(clip([0, 6, 1, 9, 2]))
        XCTAssertGreaterThan(VideoMetrics.roughness(rough)!, 5)
        let gap = VideoMetrics.centerOfMassTrack(clip([0, 2, nil, 6, 8]))
        XCTAssertNil(gap[2])
        XCTAssertNil(VideoMetrics.roughness(gap), "no three consecutive frames with mass")
        let m = VideoMetrics.motion([clip([0, 2, 4, 6, 8]), clip([0, 2, nil, 6, 8])])
        XCTAssertEqual(m.clips, 2)
        XCTAssertEqual(m.roughness, 0, accuracy: 1e-9)
        XCTAssertEqual(m.emptyFrames, 0.1, accuracy: 1e-9)
        XCTAssertEqual(VideoMetrics.labelStability([[1, 1, 1, 2], [3, 3]]), 0.875, accuracy: 1e-9)
    }

    /// A smooth object (a filled disc with a soft rim) on a black canvas has no grain; grey grain
    /// (+0.1 of full brightness) on 10 % of the canvas is found, and that frame (only) counts as
    /// speckled; 2 % (codec ringing's order) does not count.
    func testSpeckledFramesAreFoundAndCleanOnesAreNot() {
        let t = Tensor.full([3, 1, 32, 32], -1)
        for f in 0..<3 {
            for y in 0..<32 {
                for x in 0..<32 {
                    let r = (Float((x - 12 - 2 * f) * (x - 12 - 2 * f) + (y - 16) * (y - 16))).squareRoot()
                    t.data[f * 1024 + y * 32 + x] = r < 6 ? 0.8 : (r < 8 ? 0.8 - (r - 6) : -1)
                }
            }
        }
        XCTAssertEqual(VideoMetrics.speckle(t, frame: 0), 0)
        let canvas = (0..<1024).filter { t.data[2 * 1024 + $0] == -1 }, faint = (0..<1024).filter { t.data[1024 + $0] == -1 }
        var rng = SplitMix64(seed: 3)
        func grain(_ pixels: [Int], share: Double, frame: Int) -> Int {
            var salted = Set<Int>()
            while salted.count < Int(Double(pixels.count) * share) { salted.insert(pixels[Int(rng.next() % UInt64(pixels.count))]) }
            for i in salted { t.data[frame * 1024 + i] += 0.2 }  // +0.1 in [0, 1]
            return salted.count
        }
        let n = grain(canvas, share: 0.1, frame: 2)
        XCTAssertEqual(VideoMetrics.speckle(t, frame: 2), Double(n) / Double(canvas.count), accuracy: 0.02)
        _ = grain(faint, share: 0.02, frame: 1)
        XCTAssertLessThan(VideoMetrics.speckle(t, frame: 1), VideoMetrics.speckledShare)
        let m = VideoMetrics.motion([t, t.slice(axis: 0, 0..<2)])
        XCTAssertEqual(m.speckledFrames, 1.0 / 5, accuracy: 1e-9)
        XCTAssertEqual(m.speckledClips, 1)
    }

    /// The seam of a continuation: a clip whose brightness steps by 0.1 (in [0, 1]) per kept frame
    /// and then by 0.4 has ratio 4; a uniform clip has ratio 1; JSON carries the ratio.
    func testSeamComparesTheChangeAcrossTheCutWithTheChangeInsideTheKeptFrames() throws {
        func clip(_ levels: [Float]) -> Tensor {
            let t = Tensor.zeros([levels.count, 1, 4, 4])
            for (f, l) in levels.enumerated() { for i in 0..<16 { t.data[f * 16 + i] = l * 2 - 1 } }
            return t
        }
        XCTAssertEqual(VideoMetrics.frameChange(clip([0.2, 0.5]), at: 1), 0.3, accuracy: 1e-6)
        let jump = VideoMetrics.seam([clip([0, 0.1, 0.2, 0.3, 0.7, 0.8])], kept: 4)
        XCTAssertEqual(jump.inside, 0.1, accuracy: 1e-6)
        XCTAssertEqual(jump.across, 0.4, accuracy: 1e-6)
        XCTAssertEqual(jump.ratio, 4, accuracy: 1e-4)
        let both = VideoMetrics.seam([clip([0, 0.1, 0.2, 0.3, 0.7, 0.8]), clip([0, 0.1, 0.2, 0.3, 0.4, 0.5])], kept: 4)
        XCTAssertEqual(both.ratio, 2.5, accuracy: 1e-4, "means over clips, then their ratio")
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(jump)) as! [String: Any]
        XCTAssertEqual(json["ratio"] as! Double, 4, accuracy: 1e-4)
        XCTAssertEqual(try JSONDecoder().decode(VideoMetrics.Seam.self, from: JSONEncoder().encode(jump)), jump)
    }

    /// Consecutive stability counts label switches between neighbouring frames, which the
    /// majority fraction cannot see: a flickering clip and a clip that switches once can have the
    /// same majority.
    func testConsecutiveLabelStability() {
        typealias M = VideoMetrics
        XCTAssertEqual(M.consecutiveLabelStability([[4, 4, 4, 4]]), 1, accuracy: 1e-12)
        XCTAssertEqual(M.consecutiveLabelStability([[1, 2, 1, 2]]), 0, accuracy: 1e-12)
        XCTAssertEqual(M.labelStability([[1, 2, 1, 2]]), 0.5, accuracy: 1e-12)
        XCTAssertEqual(M.consecutiveLabelStability([[1, 1, 2, 2]]), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(M.labelStability([[1, 1, 2, 2]]), 0.5, accuracy: 1e-12)
        // Mean over clips, each clip weighing the same whatever its length; clips of fewer than
        // two frames have no pairs and are left out.
        XCTAssertEqual(M.consecutiveLabelStability([[1, 1, 2, 2], [3, 3], [7], []]), (2.0 / 3 + 1) / 2, accuracy: 1e-12)
        XCTAssertEqual(M.consecutiveLabelStability([[1, 1, 1, 1, 1, 9]]), 0.8, accuracy: 1e-12)
        XCTAssert(M.consecutiveLabelStability([[5], []]).isNaN)
        XCTAssert(M.consecutiveLabelStability([]).isNaN)
    }
}
