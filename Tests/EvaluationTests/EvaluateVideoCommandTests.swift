import XCTest
import TestSupport
import Foundation
import Tensor
import Video
@testable import Evaluation

/// `diffuse args...` as a user runs it (TestSupport's runner).
private func runDiffuse(_ args: [String], env: [String: String] = [:]) throws -> DiffuseResult {
    try runDiffuseCommand(args, env: env)
}

/// Four classes of 14-pixel items a small probe tells apart at once (filled square, ring,
/// horizontal bars, vertical bars), two items of each (bright and dim).
private func patternItems() -> MovingFashion.ItemImages {
    let side = 14
    var px: [Float] = [], labels: [Int] = []
    for label in 0..<4 {
        for bright: Float in [1, 0.5] {
            for y in 0..<side {
                for x in 0..<side {
                    let on: Bool
                    switch label {
                    case 0: on = true
                    case 1: on = x < 3 || y < 3 || x >= side - 3 || y >= side - 3
                    case 2: on = y % 4 < 2
                    default: on = x % 4 < 2
                    }
                    px.append(on ? bright : -1)
                }
            }
            labels.append(label)
        }
    }
    return MovingFashion.ItemImages(side: side, pixels: px, labels: labels)
}

final class EvaluateVideoCommandTests: XCTestCase {

    /// Real clips (seed 0) against other clips of the same kind (seed 1) and against clips whose
    /// frames are shuffled in time (seed 2, flat NNNN-<class>.mp4 as `generate video` names
    /// them): the same kind is as stable and as smooth as the held-out real clips, the shuffled
    /// clips are far rougher. The second run reuses the cached probe.
    func testSameKindMatchesRealAndShuffledFramesAreRough() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("diffuse-evaluate-video-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        let env = ["XDG_CACHE_HOME": dir.appendingPathComponent("cache").path, "DIFFUSE_THREADS": "1"]
        let items = patternItems()
        // Labels 0...3 of the items are square, ring, bars-h, bars-v; the folders sort them.
        let names = ["square", "ring", "bars-h", "bars-v"]
        var o = MovingFashion.Options()
        o.frames = 8
        o.maxItems = 1
        let real = dir.appendingPathComponent("real"), same = dir.appendingPathComponent("same")
        try MovingFashion.write(to: real, perClass: 6, options: o, items: items, classNames: names)
        // The folders' sort order, as this test was tuned with (the writer's classes.json would keep `names`' order).
        try fm.removeItem(at: real.appendingPathComponent("classes.json"))
        o.seed = 1
        try MovingFashion.write(to: same, perClass: 4, options: o, items: items, classNames: names)
        try fm.removeItem(at: same.appendingPathComponent("classes.json"))
        o.seed = 2
        let shuffled = dir.appendingPathComponent("shuffled")
        try fm.createDirectory(at: shuffled, withIntermediateDirectories: true)
        let pools = items.pools(classes: 4)
        let order = [5, 0, 3, 7, 1, 6, 2, 4]  // no frame keeps a neighbour
        for i in 0..<16 {
            let clip = MovingFashion.clip(index: i, label: i % 4, pool: pools[i % 4], items: items, options: o).frames  // [F, 1, S, S]
            let plane = o.size * o.size
            let out = Tensor.zeros(clip.shape)
            for (k, f) in order.enumerated() { (out.data + k * plane).update(from: clip.data + f * plane, count: plane) }
            try VideoCodec.writeMP4(out, fps: o.fps, to: shuffled.appendingPathComponent(String(format: "%04d-%@.mp4", i, names[i % 4])))
        }

        func evaluate(_ generated: URL) throws -> [String: Any] {
            let r = try runDiffuse(["evaluate", "video", "--real", real.path, "--generated", generated.path, "--json",
                                    "--probe-steps", "60"], env: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        }
        func number(_ o: [String: Any], _ path: String...) -> Double {
            var v: Any? = o
            for k in path { v = (v as? [String: Any])?[k] }
            return (v as? NSNumber)?.doubleValue ?? .nan
        }
        let start = Date()
        let a = try evaluate(same), b = try evaluate(shuffled)
        print(String(format: "evaluate video: two runs in %.1f s", Date().timeIntervalSince(start)))
        print("same:", a["generated_clips"] ?? "-", a["real_clips"] ?? "-")
        print("shuffled:", b["generated_clips"] ?? "-")

        XCTAssertEqual(number(a, "real", "clips"), 24)
        XCTAssertEqual(number(a, "real", "frames"), 8)
        XCTAssertEqual(number(a, "real", "size"), 32)
        XCTAssertEqual(number(a, "generated", "clips"), 16)
        XCTAssertEqual(number(b, "generated", "clips"), 16)
        XCTAssertEqual(number(a, "probe", "trained_on"), 24, "12 training clips, every 4th of 8 frames")
        XCTAssertEqual(number(a, "probe", "cached"), 0)
        XCTAssertEqual(number(b, "probe", "cached"), 1, "the second run reuses the probe")
        XCTAssertGreaterThan(number(a, "probe", "accuracy"), 0.8)
        XCTAssertEqual(number(a, "fd", "compared"), 6)  // clips: half of the 12 held out

        // The same kind of clip: stability and agreement as the held-out real clips have them.
        let stableSame = number(a, "generated_clips", "consecutive_stability"), stableReal = number(a, "real_clips", "consecutive_stability")
        XCTAssertGreaterThan(stableReal, 0.8)
        XCTAssertEqual(stableSame, stableReal, accuracy: 0.15)
        XCTAssertGreaterThan(number(a, "generated_clips", "clip_agreement"), 0.8)
        XCTAssertGreaterThan(number(a, "generated_clips", "frame_agreement"), 0.8)
        // Smooth like real clips; shuffled in time, the centre of mass jumps about.
        let roughReal = number(a, "real_clips", "motion", "roughness"), roughSame = number(a, "generated_clips", "motion", "roughness")
        let roughShuffled = number(b, "generated_clips", "motion", "roughness")
        XCTAssertLessThan(roughSame, 2 * roughReal + 0.5)
        XCTAssertGreaterThan(roughShuffled, 3 * roughReal + 1)
        XCTAssertGreaterThan(number(b, "generated_clips", "motion", "speed"), 2 * number(a, "real_clips", "motion", "speed"))
        XCTAssertEqual(number(b, "real_clips", "motion", "roughness"), roughReal, "the real figures do not depend on the generated set")
        XCTAssertEqual(number(a, "generated_clips", "motion", "empty_frames"), 0)

        // Text output; a generated class the real set lacks; a bad built-in name.
        let text = try runDiffuse(["evaluate", "video", "--real", real.path, "--generated", shuffled.path, "--probe-steps", "60"], env: env)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssert(text.stdout.contains("label stability, consecutive frames") && text.stdout.contains("(cached)"), text.stdout)
        try fm.copyItem(at: shuffled.appendingPathComponent("0000-square.mp4"), to: shuffled.appendingPathComponent("0099-unicorn.mp4"))
        let unknown = try runDiffuse(["evaluate", "video", "--real", real.path, "--generated", shuffled.path], env: env)
        XCTAssertEqual(unknown.status, 1)
        XCTAssert(unknown.stderr.contains("unicorn"), unknown.stderr)
        XCTAssertEqual(try runDiffuse(["evaluate", "video", "--real", "builtin:moving-mnist", "--generated", shuffled.path]).status, 64)

        // Continuations (--kept-frames 4): clips of the same kind go on as smoothly as real ones
        // (the real clips cut at frame 4 are the reference); clips whose frames 4... come from
        // another clip jump at the seam.
        let jumped = dir.appendingPathComponent("jumped")
        try fm.createDirectory(at: jumped, withIntermediateDirectories: true)
        for i in 0..<8 {
            let a = MovingFashion.clip(index: i, label: i % 4, pool: pools[i % 4], items: items, options: o).frames
            let b = MovingFashion.clip(index: i + 8, label: i % 4, pool: pools[i % 4], items: items, options: o).frames
            let plane = o.size * o.size
            (a.data + 4 * plane).update(from: b.data + 4 * plane, count: 4 * plane)
            try VideoCodec.writeMP4(a, fps: o.fps, to: jumped.appendingPathComponent(String(format: "%04d-%@.mp4", i, names[i % 4])))
        }
        func seam(_ generated: URL) throws -> (generated: Double, real: Double) {
            let r = try runDiffuse(["evaluate", "video", "--real", real.path, "--generated", generated.path, "--json", "--kept-frames", "4"], env: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            XCTAssertEqual(number(o, "generated_clips", "seam", "kept_frames"), 4)
            return (number(o, "generated_clips", "seam", "ratio"), number(o, "real_clips", "seam", "ratio"))
        }
        let smooth = try seam(same), jump = try seam(jumped)
        print("seam ratios: same kind \(smooth), jumped \(jump)")
        XCTAssertEqual(smooth.real, 1, accuracy: 0.5)
        XCTAssertEqual(smooth.generated, smooth.real, accuracy: 0.5)
        XCTAssertGreaterThan(jump.generated, 2 * smooth.generated)
        let seamText = try runDiffuse(["evaluate", "video", "--real", real.path, "--generated", jumped.path, "--kept-frames", "4"], env: env)
        XCTAssert(seamText.stdout.contains("seam ÷ inside"), seamText.stdout)
        XCTAssertFalse(text.stdout.contains("seam"), "no seam figures without --kept-frames")
        let whole = try runDiffuse(["evaluate", "video", "--real", real.path, "--generated", jumped.path, "--kept-frames", "8"], env: env)
        XCTAssertEqual(whole.status, 1)
        XCTAssert(whole.stderr.contains("kept frames"), whole.stderr)
    }

    /// Clips load frame by frame, clip by clip, whatever the layout: [(N F), C, S, S] with every
    /// frame labelled as its clip, `clip(i)` giving clip i's frames in time order.
    func testClipsLoadAsLabelledFramesInTimeOrder() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("diffuse-video-sets-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: dir) }
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        // A bright column at x = 4k in frame k; class from the name.
        for (i, name) in ["0000-ring.mp4", "0001-square.mp4", "0002-ring.mp4"].enumerated() {
            let t = Tensor.full([4, 1, 16, 16], -1)
            for f in 0..<4 { for y in 0..<16 { for dx in 0..<2 { t.data[f * 256 + y * 16 + 4 * f + dx + (i == 1 ? 1 : 0)] = 1 } } }
            try VideoCodec.writeMP4(t, fps: 8, to: dir.appendingPathComponent(name), crf: 0)
        }
        XCTAssertEqual(try VideoSource.geometry(dir.path).frames, 4)
        let set = try VideoSource.load(dir.path, channels: nil, frames: 3, size: 16, limit: nil, seed: 0)
        XCTAssertEqual(set.count, 3)
        XCTAssertEqual(set.frames.images.shape, [9, 1, 16, 16])
        XCTAssertEqual(set.classNames, ["ring", "square"])
        XCTAssertEqual(set.labels, [0, 1, 0])
        XCTAssertEqual(set.frames.labels, [0, 0, 0, 1, 1, 1, 0, 0, 0])
        let track = VideoMetrics.centerOfMassTrack(set.clip(1))
        XCTAssertEqual(track.count, 3)
        for (k, p) in track.enumerated() { XCTAssertEqual(p?.x ?? .nan, Double(4 * k) + 1.5, accuracy: 0.3, "frame \(k)") }
        XCTAssertEqual(set.subset([2, 0]).labels, [0, 0])
        XCTAssertThrowsError(try set.relabelled(to: ["ring"]))
    }
}
