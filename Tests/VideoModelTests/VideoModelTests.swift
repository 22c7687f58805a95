import XCTest
import Foundation
import Tensor
import NN
import Diffusion
import Image
import Video
import TestSupport

/// A small class-conditional image U-Net: two levels, attention at the second.
func smallImageConfig(classes: Int? = 3, size: Int = 8) -> UNet2DConfig {
    var c = UNet2DConfig()
    c.sampleSize = [size, size]; c.inChannels = 1; c.outChannels = 1
    c.blockOutChannels = [8, 16]; c.downBlockTypes = [.downBlock2D, .attnDownBlock2D]
    c.upBlockTypes = [.attnUpBlock2D, .upBlock2D]; c.layersPerBlock = 1; c.normNumGroups = 4
    c.attentionHeadDim = 4; c.numClassEmbeds = classes
    return c
}

func smallVideoConfig(frames: Int = 3, conv: Bool = true) -> VideoUNetConfig {
    var v = VideoUNetConfig(spatial: smallImageConfig())
    v.numFrames = frames; v.temporalAttentionHeadDim = 4; v.temporalConv = conv
    return v
}

/// Random values for every parameter of `m` (fresh temporal layers have zero outputs: the identity).
func randomizeParameters(_ m: any Module, seed: UInt64) {
    var rng = RandomGenerator(seed: seed)
    for (_, t) in m.namedParameters() { t.copyFrom(rng.uniform(t.shape, low: -0.3, high: 0.3)) }
}

/// Random values for the temporal layers of a video model (its spatial part untouched).
func randomizeTemporal(_ m: VideoUNetModel, seed: UInt64) {
    for (k, entry) in m.temporal.enumerated() { randomizeParameters(entry.block, seed: seed &+ UInt64(k)) }
}

final class VideoLayoutTests: XCTestCase {
    func testReshapesMoveEveryElementWhereTheNotationSays() {
        let (n, c, f, h, w) = (2, 3, 4, 5, 6)
        let x = randomTensor([n, c, f, h, w], seed: 1)
        // x: [N, C, F, H, W] -> [(N F), C, H, W]
        let b = VideoLayout.framesToBatch(x)
        XCTAssertEqual(b.shape, [n * f, c, h, w])
        // [(N F), C, H, W] -> [(N H W), F, C]
        let s = VideoLayout.batchToSequences(b, frames: f)
        XCTAssertEqual(s.shape, [n * h * w, f, c])
        for i in 0..<n { for ch in 0..<c { for fr in 0..<f { for y in 0..<h { for xx in 0..<w {
            let v = x.data[(((i * c + ch) * f + fr) * h + y) * w + xx]
            XCTAssertEqual(b.data[(((i * f + fr) * c + ch) * h + y) * w + xx], v)
            XCTAssertEqual(s.data[(((i * h + y) * w + xx) * f + fr) * c + ch], v)
        } } } } }
        XCTAssertEqual(VideoLayout.batchToFrames(b, frames: f).scalars, x.scalars)
        XCTAssertEqual(VideoLayout.sequencesToBatch(s, height: h, width: w).scalars, b.scalars)
        // One-frame clips are images: no element moves.
        let one = randomTensor([2, 3, 1, 4, 4], seed: 2)
        XCTAssertEqual(VideoLayout.framesToBatch(one).scalars, one.scalars)
    }

    func testReshapeGradients() {
        gradientCheck([randomTensor([2, 2, 3, 2, 3], seed: 3)]) { x in
            VideoLayout.batchToSequences(VideoLayout.framesToBatch(x[0]), frames: 3) * 2
        }
        gradientCheck([randomTensor([12, 3, 2, 2], seed: 4)]) { x in
            VideoLayout.batchToFrames(VideoLayout.sequencesToBatch(x[0].reshaped([8, 6, 3]), height: 2, width: 2), frames: 6)
        }
    }
}

final class TemporalLayerTests: XCTestCase {
    /// softmax(q kᵀ/√d) v over frames: sequences [(N H W), F, C] with F = 5, two heads.
    func testFrameAttentionGradients() {
        let q = randomTensor([6, 5, 4], seed: 10), k = randomTensor([6, 5, 4], seed: 11), v = randomTensor([6, 5, 4], seed: 12)
        gradientCheck([q, k, v], h: 3e-3) { Tensor.multiHeadAttention(query: $0[0], key: $0[1], value: $0[2], heads: 2) }
    }

    /// The whole temporal attention layer, through both reshapes, against finite differences:
    /// input states and every parameter.
    func testTemporalAttentionGradients() {
        NNInit.seed(20)
        let layer = TemporalAttention(channels: 4, headDim: 2, position: .sinusoidal)
        var rng = RandomGenerator(seed: 21)
        layer.toOut.weight.copyFrom(rng.uniform([4, 4], low: -0.5, high: 0.5))
        layer.norm.weight!.copyFrom(rng.uniform([4], low: 0.5, high: 1.5))
        let h = randomTensor([2 * 3, 4, 2, 3], seed: 22)  // N = 2 clips of F = 3 frames, 2×3 pixels
        let params = [layer.toQ.weight, layer.toK.weight, layer.toV.weight, layer.toV.bias!, layer.toOut.weight,
                      layer.toOut.bias!, layer.norm.weight!, layer.norm.bias!]
        gradientCheck([h] + params, h: 3e-3, atol: 2e-3) { x in layer(x[0], frames: 3) }
    }

    func testTemporalConvGradients() {
        NNInit.seed(30)
        let conv = TemporalConv(channels: 4, groups: 2)
        var rng = RandomGenerator(seed: 31)
        conv.weight.copyFrom(rng.uniform(conv.weight.shape, low: -0.5, high: 0.5))
        conv.bias.copyFrom(rng.uniform([4], low: -0.5, high: 0.5))
        let h = randomTensor([2 * 4, 4, 2, 2], seed: 32)
        gradientCheck([h, conv.weight, conv.bias, conv.norm.weight!], h: 3e-3, atol: 2e-3) { x in conv(x[0], frames: 4) }
    }

    func testFreshTemporalLayersAreTheIdentityAndAttendOverFramesOnly() {
        NNInit.seed(40)
        let block = TemporalBlock(channels: 8, config: smallVideoConfig(conv: true))
        let h = randomTensor([2 * 5, 8, 3, 3], seed: 41)
        XCTAssertEqual(GradMode.withoutGrad { block(h, frames: 5) }.scalars, h.scalars, "zero-initialised outputs")
        randomizeParameters(block, seed: 42)
        let y = GradMode.withoutGrad { block(h, frames: 5) }
        XCTAssertNotEqual(y.scalars, h.scalars)
        // Changing clip 0, frame 0 at pixel (1, 1) reaches frame 4 (attention over all frames)
        // and leaves clip 1 alone (the conv's group norm is per clip).
        let h2 = h.copy()
        for ch in 0..<8 { h2.data[(0 * 8 + ch) * 9 + 4] += 0.5 }
        let y2 = GradMode.withoutGrad { block(h2, frames: 5) }
        let clip1 = 5 * 8 * 9
        XCTAssertEqual(Array(y2.scalars[clip1...]), Array(y.scalars[clip1...]), "clip 1 is untouched")
        XCTAssertNotEqual(y2.data[(4 * 8 + 0) * 9 + 4], y.data[(4 * 8 + 0) * 9 + 4], "frame 4 sees frame 0 at the same pixel")
    }

    func testSinusoidalFramePositionsDistinguishFrames() {
        let a = TemporalAttention(channels: 8, headDim: nil, position: .sinusoidal)
        let e = a.frameEmbedding(frames: 4)
        XCTAssertEqual(e.shape, [4, 8])
        XCTAssertEqual(Array(e.scalars[0..<8]), [0, 0, 0, 0, 1, 1, 1, 1], "frame 0: sin 0, cos 0")
        XCTAssertEqual(e.data[8], Float(sin(1.0)), accuracy: 1e-6)
    }
}

final class VideoUNetTests: XCTestCase {
    /// With its temporal layers fresh, the video model built on an image model's weights is that
    /// image model on every frame: bit for bit against the image model on the same batch of
    /// frames, and within 1e-6 against it on each frame alone.
    func testZeroInitialisedVideoModelIsTheImageModelOnEveryFrame() throws {
        NNInit.seed(50)
        let image = try UNet2DModel(config: smallImageConfig())
        NNInit.seed(51)  // a different spatial init, overwritten by the image weights
        let video = try VideoUNetModel(config: smallVideoConfig(frames: 3, conv: true))
        XCTAssertEqual(try video.loadSpatial(from: image, source: "test"), [])
        let (n, f) = (2, 3)
        let x = randomTensor([n, 1, f, 8, 8], seed: 52)
        let t: [Float] = [10, 700], labels = [1, 2]
        let out = GradMode.withoutGrad { video(x, timesteps: t, classLabels: labels) }
        XCTAssertEqual(out.shape, [n, 1, f, 8, 8])
        // The image model on the (N F) frames as one batch: identical bits.
        let frames = VideoLayout.framesToBatch(x)
        let batched = GradMode.withoutGrad {
            image(frames, timesteps: [10, 10, 10, 700, 700, 700], classLabels: [1, 1, 1, 2, 2, 2])
        }
        XCTAssertEqual(VideoLayout.framesToBatch(out).scalars, batched.scalars)
        // And on each frame alone.
        for i in 0..<n {
            for k in 0..<f {
                let one = frames.slice(axis: 0, (i * f + k)..<(i * f + k + 1))
                let want = GradMode.withoutGrad { image(one, timesteps: [t[i]], classLabels: [labels[i]]) }
                let got = VideoLayout.framesToBatch(out).slice(axis: 0, (i * f + k)..<(i * f + k + 1))
                assertClose(got, want, atol: 1e-6, rtol: 0, "clip \(i) frame \(k)")
            }
        }
        // Trained temporal layers make frames depend on each other.
        randomizeTemporal(video, seed: 53)
        let mixed = GradMode.withoutGrad { video(x, timesteps: t, classLabels: labels) }
        let x2 = x.copy()
        x2.data[0] += 1  // clip 0, frame 0
        let mixed2 = GradMode.withoutGrad { video(x2, timesteps: t, classLabels: labels) }
        let frame2 = 2 * 64  // clip 0, frame 2
        XCTAssertNotEqual(Array(mixed2.scalars[frame2..<(frame2 + 64)]), Array(mixed.scalars[frame2..<(frame2 + 64)]))
        XCTAssertEqual(Array(mixed2.scalars[(3 * 64)...]), Array(mixed.scalars[(3 * 64)...]), "clip 1 is untouched")
    }

    func testParameterNamesAreTheImageModelsPlusTemporal() throws {
        let image = try UNet2DModel(config: smallImageConfig())
        let video = try VideoUNetModel(config: smallVideoConfig())
        let imageNames = Set(image.namedParameters().map(\.name))
        let videoNames = video.namedParameters().map(\.name)
        XCTAssertEqual(Set(videoNames.filter { !$0.hasPrefix("temporal.") }), imageNames)
        XCTAssertEqual(videoNames.count, Set(videoNames).count, "no duplicate names")
        // 1 down layer per level (2), 2 mid resnets, 2 up layers per level (4).
        XCTAssertEqual(video.temporal.map(\.layer.path),
                       ["down_blocks.0.0", "down_blocks.1.0", "mid_block.0", "mid_block.1",
                        "up_blocks.0.0", "up_blocks.0.1", "up_blocks.1.0", "up_blocks.1.1"])
        XCTAssert(videoNames.contains("temporal.mid_block.1.attention.to_out.0.weight"), "\(videoNames.filter { $0.hasPrefix("temporal.mid") })")
        XCTAssert(videoNames.contains("temporal.down_blocks.0.0.conv.weight"))
        XCTAssertEqual(video.parameterCount, image.parameterCount + video.temporalParameterCount)
    }

    func testOneFrameClipsAndAJointTrainingStep() throws {
        NNInit.seed(60)
        let video = try VideoUNetModel(config: smallVideoConfig())
        randomizeTemporal(video, seed: 61)
        let x = randomTensor([3, 1, 1, 8, 8], seed: 62)
        let y = GradMode.withoutGrad { video(x, timesteps: [5, 50, 500], classLabels: [0, 1, 2]) }
        XCTAssertEqual(y.shape, [3, 1, 1, 8, 8])
        XCTAssert(y.scalars.allSatisfy(\.isFinite))
        // One clip alone gives the same as in the batch.
        let y1 = GradMode.withoutGrad { video(x.slice(axis: 0, 1..<2), timesteps: [50], classLabels: [1]) }
        assertClose(y1, y.slice(axis: 0, 1..<2), atol: 1e-6, rtol: 0)
        // A training step on one-frame clips, then one on 4-frame clips, with the same model.
        let objective = DiffusionObjective(schedule: try SchedulerConfig(.ddpm).noiseSchedule())
        var o = TrainerOptions(); o.batchSize = 2; o.steps = 2; o.emaDecay = 0
        let trainer = try Trainer(model: video, objective: objective, options: o)
        let a = try trainer.trainStep { _ in (randomTensor([2, 1, 1, 8, 8], seed: 63), [0, 1]) }
        let b = try trainer.trainStep { _ in (randomTensor([2, 1, 4, 8, 8], seed: 64), [2, 0]) }
        XCTAssert(a.loss.isFinite && b.loss.isFinite && a.gradNorm > 0 && b.gradNorm > 0)
    }

    func testFolderRoundTripAndConfig() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        NNInit.seed(70)
        let video = try VideoUNetModel(config: smallVideoConfig())
        randomizeTemporal(video, seed: 71)
        let folder = tmp.file("model")
        try video.save(to: folder)
        let again = try VideoUNetModel.load(folder)
        XCTAssertEqual(again.config, video.config)
        let x = randomTensor([1, 1, 3, 8, 8], seed: 72)
        let want = GradMode.withoutGrad { video(x, timesteps: [300], classLabels: [2]) }
        XCTAssertEqual(GradMode.withoutGrad { again(x, timesteps: [300], classLabels: [2]) }.scalars, want.scalars)
        try video.save(to: tmp.file("f16"), dtype: .F16)
        assertClose(GradMode.withoutGrad { try! VideoUNetModel.load(tmp.file("f16"))(x, timesteps: [300], classLabels: [2]) }, want,
                    atol: 2e-2, rtol: 2e-2)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(json["_class_name"] as? String, "VideoUNetModel")
        XCTAssertEqual(json["num_frames"] as? Int, 3)
        XCTAssertEqual(json["temporal_conv"] as? Bool, true)
        XCTAssertEqual(json["frame_position"] as? String, "sinusoidal")
        XCTAssertEqual(json["block_out_channels"] as? [Int], [8, 16])
        XCTAssertEqual(try ModelFolder.className(of: folder), "VideoUNetModel")

        // An image model's config.json with another class name and an unknown key: temporal
        // defaults, the unknown key kept and written back, round trip exact.
        var text = String(decoding: try JSONEncoder().encode(smallImageConfig()), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"UNet2DModel\"", with: "\"VideoUNetModel\"")
        text.removeLast()
        text += ", \"future_key\": [\"a\", \"b\"]}"
        let c = try JSONDecoder().decode(VideoUNetConfig.self, from: Data(text.utf8))
        XCTAssertEqual(c.spatial.blockOutChannels, [8, 16])
        XCTAssertEqual(c.numFrames, 16)
        XCTAssertEqual(c.spatial.extra["future_key"], .array([.string("a"), .string("b")]))
        XCTAssertEqual(try JSONDecoder().decode(VideoUNetConfig.self, from: try JSONEncoder().encode(c)), c)
        // Impossible values name their key.
        text = text.replacingOccurrences(of: "\"future_key\"", with: "\"temporal_attention_head_dim\": 3, \"x\"")
        XCTAssertThrowsError(try JSONDecoder().decode(VideoUNetConfig.self, from: Data(text.utf8))) { e in
            XCTAssert("\(e)".contains("temporal_attention_head_dim"), "\(e)")
        }
    }

    /// An image model folder loads into the spatial part; a class embedding of another size is
    /// skipped (and named), a different U-Net is refused.
    func testLoadSpatialFromAnImageModel() throws {
        let tmp = try TemporaryFolder()
        defer { tmp.remove() }
        NNInit.seed(80)
        let image = try UNet2DModel(config: smallImageConfig(classes: 5))
        try ImagePipeline(unet: image, scheduler: SchedulerConfig(.ddpm), classNames: ["a", "b", "c", "d"]).save(to: tmp.file("pipe"))
        let video = try VideoUNetModel(config: smallVideoConfig())  // 3 classes
        let skipped = try video.loadSpatial(from: try UNet2DModel.load(tmp.file("pipe")), source: "pipe")
        XCTAssertEqual(skipped, ["class_embedding.weight"])
        XCTAssertEqual(video.stateDict()["conv_in.weight"]!.scalars, image.stateDict()["conv_in.weight"]!.scalars)
        var other = smallImageConfig()
        other.blockOutChannels = [8, 8]
        XCTAssertThrowsError(try video.loadSpatial(from: try UNet2DModel(config: other), source: "other")) { e in
            XCTAssert("\(e)".contains("other"), "\(e)")
        }
    }
}
