import XCTest
import Foundation
import TestSupport
import Tensor
import NN
@testable import Image
import Media
import Diffusion
import Workflow

/// `diffuse distill`: the targets against the samplers the students use, and the command on a
/// tiny teacher (stages, the student folder, baked guidance, --fast, resumption).
final class DistillTests: XCTestCase {
    /// Progressive distillation's x̃₀: one DDIM step of the student's n-step trajectory with it
    /// lands where two steps of the teacher's 2n-step trajectory do (our DDIM sampler, diffusers'
    /// arithmetic), at every step of the trajectory.
    func testProgressiveTargetIsTwoTeacherStepsInOne() throws {
        let config = SchedulerConfig(.ddim, ["timestep_spacing": .string("trailing"), "set_alpha_to_one": .bool(true),
                                             "clip_sample": .bool(false)])
        let ctx = Distillation.Context(schedule: try config.noiseSchedule(), param: try config.parameterization(), nullLabel: nil,
                                       labelDropout: 0, weighting: .x0)
        // Any smooth function of x and t stands in for a teacher.
        let teacher: Distillation.Context.Predictor = { x, t, _ in
            x * 0.6 + Tensor(shape: [t.count, 1, 1, 1], scalars: t.map { Foundation.sin($0 / 300) })
        }
        let n = 4
        let coarse = try DDIMSampler(config: config, steps: n), fine = try DDIMSampler(config: config, steps: 2 * n)
        XCTAssertEqual(coarse.discreteTimesteps, ctx.trailing(n))
        let ac = try config.noiseSchedule().alphasCumprodF
        for i in 0..<n {
            var rng = RandomGenerator(seed: UInt64(i))
            let xt = rng.normal([2, 1, 4, 4])
            let target = ctx.progressiveTarget(teacher: teacher, studentSteps: n, index: [i, i], xt: xt, labels: nil)
            var two: Tensor?
            _ = fine.sample(from: xt, startIndex: 2 * i, noise: &rng, denoise: { x, t in teacher(x, [t, t], nil) },
                            onStep: { k, x in if k == 2 * i + 1 { two = x } })
            let t = coarse.discreteTimesteps[i]
            let a = ac[t].squareRoot(), s = (1 - ac[t]).squareRoot()
            var one: Tensor?
            _ = coarse.sample(from: xt, startIndex: i, noise: &rng, denoise: { x, tt in
                Int(tt) == t ? (x - target * a) / s : Tensor.zeros(x.shape)
            }, onStep: { k, x in if k == i { one = x } })
            let d = zip(try XCTUnwrap(one).scalars, try XCTUnwrap(two).scalars).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(d, 2e-4, "step \(i) (t = \(t))")
        }
    }

    /// A v-predicting student of an ε-predicting teacher: the teacher's prediction converted to
    /// v (stage 1's target) and back (a frozen student as the next halving's solver) is the
    /// teacher's, so the progressive target is unchanged; the student's folder samples as v.
    func testVPredictingStudentOfAnEpsilonTeacher() throws {
        let config = SchedulerConfig(.ddim, ["timestep_spacing": .string("trailing"), "set_alpha_to_one": .bool(true),
                                             "clip_sample": .bool(false)])
        var v = try config.parameterization()
        v.prediction = .vPrediction
        let ctx = Distillation.Context(schedule: try config.noiseSchedule(), param: try config.parameterization(), studentParam: v,
                                       nullLabel: nil, labelDropout: 0, weighting: .snrPlusOne)
        let teacher: Distillation.Context.Predictor = { x, t, _ in
            x * 0.6 + Tensor(shape: [t.count, 1, 1, 1], scalars: t.map { Foundation.sin($0 / 300) })
        }
        let ac = try config.noiseSchedule().alphasCumprodF
        // The teacher as a v-student: v = √ᾱ ε − √(1−ᾱ) x₀.
        let student: Distillation.Context.Predictor = { x, t, l in
            let shape = [t.count, 1, 1, 1]
            let a = Tensor(shape: shape, scalars: t.map { ac[Int($0)].squareRoot() })
            let s = Tensor(shape: shape, scalars: t.map { (1 - ac[Int($0)]).squareRoot() })
            let converted = ctx.asStudent(teacher(x, t, l), x: x, a: a, s: s)
            let eps = teacher(x, t, l), x0 = (x - s * eps) / a
            let direct = a * eps - s * x0
            XCTAssertLessThan(zip(converted.scalars, direct.scalars).map { abs($0 - $1) }.max()!, 1e-4)
            return converted
        }
        for i in 0..<4 {
            var rng = RandomGenerator(seed: UInt64(i))
            let xt = rng.normal([2, 1, 4, 4])
            let want = ctx.progressiveTarget(teacher: teacher, studentSteps: 4, index: [i, i], xt: xt, labels: nil)
            let got = ctx.progressiveTarget(teacher: ctx.asTeacher(student), studentSteps: 4, index: [i, i], xt: xt, labels: nil)
            XCTAssertLessThan(zip(want.scalars, got.scalars).map { abs($0 - $1) }.max()!, 2e-3, "step \(i)")
        }
        var recipe = DistillationRecipe(teacher: "t")
        recipe.studentPrediction = .vPrediction
        let scheduler = Distillation.studentScheduler(recipe, teacher: SchedulerConfig(.ddpm))
        XCTAssertEqual(scheduler.values["prediction_type"], .string("v_prediction"))
        XCTAssertEqual(try scheduler.parameterization().prediction, .vPrediction)
        XCTAssertNil(Distillation.studentScheduler(DistillationRecipe(teacher: "t"), teacher: SchedulerConfig(.ddpm)).values["prediction_type"]
                        .flatMap { $0 == .string("epsilon") ? nil : $0 }, "an ε student keeps the teacher's type")
        XCTAssertFalse(DistillationRecipe(teacher: "t").canResume(as: recipe))
        let decoded = try JSONDecoder().decode(DistillationRecipe.self, from: Data(#"{"teacher": "t", "student_prediction": "v_prediction", "weighting": "snr+1"}"#.utf8))
        XCTAssertEqual(decoded.studentPrediction, .vPrediction)
        XCTAssertEqual(decoded.weighting, .snrPlusOne)
    }

    /// A teacher guided in an interval (its folder's sampling.json `guidance_interval`): the
    /// samples whose timestep is inside get uncond + w (cond − uncond), the others the conditional
    /// prediction alone, in one batch; the recipe records it, checks it and refuses to resume
    /// without it.
    func testGuidedTeacherInAnIntervalIsConditionalOutsideIt() throws {
        /// cond: label + 1 everywhere; uncond (label 9, the null): 0.
        final class LabelModel: DiffusionModel {
            var labelCount: Int? { 10 }
            func visit(_ v: inout ModuleVisitor) {}
            func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor {
                let per = x.shape.dropFirst().reduce(1, *)
                return Tensor(shape: x.shape, scalars: labels!.flatMap { [Float](repeating: $0 == 9 ? 0 : Float($0 + 1), count: per) })
            }
        }
        let config = SchedulerConfig(.ddpm)
        let ctx = Distillation.Context(schedule: try config.noiseSchedule(), param: try config.parameterization(), nullLabel: 9,
                                       labelDropout: 0, weighting: .x0)
        let x = Tensor.zeros([4, 1, 2, 2]), t: [Float] = [50, 300, 600, 900], labels = [0, 1, 2, 3]
        func firsts(_ y: Tensor) -> [Float] { (0..<4).map { y.scalars[$0 * 4] } }
        XCTAssertEqual(firsts(ctx.guided(LabelModel(), scale: 3)(x, t, labels)), [3, 6, 9, 12])
        XCTAssertEqual(firsts(ctx.guided(LabelModel(), scale: 3, interval: 100...600)(x, t, labels)), [1, 6, 9, 4])
        XCTAssertEqual(firsts(ctx.guided(LabelModel(), scales: [2, 3, 4, 5], interval: 100...600)(x, t, labels)), [1, 6, 12, 4])
        let recipe = try JSONDecoder().decode(DistillationRecipe.self, from: Data(#"{"teacher": "t", "guidance_interval": [82, 579]}"#.utf8))
        XCTAssertEqual(recipe.interval, 82...579)
        XCTAssertEqual(DistillationInfo(recipe, steps: 4).guidanceInterval, [82, 579])
        XCTAssertFalse(DistillationRecipe(teacher: "t").canResume(as: recipe))
        XCTAssertThrowsError(try JSONDecoder().decode(DistillationRecipe.self, from: Data(#"{"teacher": "t", "guidance_interval": [600, 1]}"#.utf8))) {
            XCTAssert("\($0)".contains("guidance_interval"), "\($0)")
        }
    }

    /// The consistency function's boundary condition is the LCM sampler's (timestep_scaling 10).
    func testConsistencyBoundaryIsTheLCMSamplers() throws {
        let standard = DistillationRecipe(teacher: "t")
        XCTAssertEqual(standard.method, .progressive, "the method that measured best is the default")
        XCTAssertEqual(standard.training.learningRate, 5e-5)
        XCTAssertEqual(standard.grid, 16)
        let recipe = DistillationRecipe(teacher: "t", method: .consistency)
        XCTAssertEqual(recipe.training.learningRate, 5e-6)
        let config = Distillation.studentScheduler(recipe, teacher: SchedulerConfig(.ddpm))
        XCTAssertEqual(config.className, "LCMScheduler")
        let lcm = try LCMSampler(config: config, steps: 4)
        for t in [0, 19, 39, 499, 999] {
            let (skip, out) = lcm.boundaryCondition(t)
            XCTAssertEqual(Distillation.Context.boundary(t).skip, skip)
            XCTAssertEqual(Distillation.Context.boundary(t).out, out)
        }
        var longer = standard
        longer.steps = 600; longer.previewEvery = 50
        XCTAssertTrue(standard.canResume(as: longer), "--resume --steps N goes on with longer stages (the message says only --steps may change)")
        var other = standard
        other.grid = 8
        XCTAssertFalse(standard.canResume(as: other))
        XCTAssertFalse(standard.canResume(as: recipe))
        XCTAssertThrowsError(try JSONDecoder().decode(DistillationRecipe.self, from: Data(#"{"teacher": "t", "method": "progressive", "grid": 12}"#.utf8)),
                             "progressive halves: the grid must be student_steps × 2^k")
    }

    /// A tiny teacher (2 classes + the null label, 8×8) distilled both ways on a tiny folder.
    func testDistilTinyTeacherBothWays() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-distill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = UNet2DConfig()
        c.sampleSize = [8, 8]; c.inChannels = 1; c.outChannels = 1
        c.blockOutChannels = [8, 16]; c.downBlockTypes = [.downBlock2D, .downBlock2D]
        c.upBlockTypes = [.upBlock2D, .upBlock2D]; c.layersPerBlock = 1; c.normNumGroups = 4
        c.numClassEmbeds = 3
        NNInit.seed(3)
        let teacherDir = dir.appendingPathComponent("teacher")
        try Pipeline<ImageModality>(unet: try UNet2DModel(config: c), scheduler: SchedulerConfig(.ddpm), classNames: ["dot", "bar"])
            .save(to: teacherDir)
        // The teacher's own guidance interval is what the student learns by default.
        try SamplingDefaults(guidanceInterval: 82...579).save(teacherDir)
        for (k, name) in ["dot", "bar"].enumerated() {
            let folder = dir.appendingPathComponent("data/\(name)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for j in 0..<3 {
                let img = Tensor(shape: [1, 8, 8], scalars: (0..<64).map { p in Float(((p / 8 + j) % (k + 2)) == 0 ? 1 : -1) })
                try PNGCodec.write(img, to: folder.appendingPathComponent("\(j).png"))
            }
        }
        func distill(_ out: String, _ extra: [String]) throws -> DiffuseResult {
            try runDiffuseCommand(["distill", "image", "--teacher", teacherDir.path, "--data", dir.appendingPathComponent("data").path,
                                   "--out", dir.appendingPathComponent(out).path, "--guidance-steps", "2", "--steps", "2",
                                   "--batch", "2", "--preview-every", "2", "--threads", "1"] + extra)
        }
        var r = try distill("pd", ["--method", "progressive", "--student-steps", "2", "--grid", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pd = dir.appendingPathComponent("pd")
        for stage in ["stage-1-guidance", "stage-2-8to4", "stage-3-4to2"] {
            let csv = try String(contentsOf: pd.appendingPathComponent("\(stage)/loss.csv"), encoding: .utf8)
            XCTAssertEqual(csv.split(separator: "\n").count, 3, "\(stage): header + 2 steps")
            XCTAssert(FileManager.default.fileExists(atPath: pd.appendingPathComponent("\(stage)/model/unet/config.json").path), stage)
        }
        let info = try XCTUnwrap(try DistillationInfo.load(pd.appendingPathComponent("model")))
        XCTAssertEqual(info.method, .progressive)
        XCTAssertEqual(info.steps, 2)
        XCTAssertEqual(info.guidanceScale, 2)
        XCTAssertEqual(info.guidanceInterval, [82, 579])
        let scheduler = try PipelineFolder.scheduler(in: pd.appendingPathComponent("model"))
        XCTAssertEqual(scheduler.className, "DDIMScheduler")
        XCTAssertEqual(scheduler.values["timestep_spacing"], .string("trailing"))
        XCTAssertNil(scheduler.values["variance_type"], "only DDIMScheduler's own keys (diffusers warns about others)")
        // The teacher's weights are not what the student ends with.
        let t = try SafeTensorsFile(url: teacherDir.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
        let s = try SafeTensorsFile(url: pd.appendingPathComponent("model/unet/diffusion_pytorch_model.safetensors"))
        XCTAssertNotEqual(try t.tensor("conv_in.weight").scalars, try s.tensor("conv_in.weight").scalars)

        // The student samples with its own sampler and steps, without guidance.
        func raw(_ model: String, _ extra: [String], _ name: String) throws -> [Float] {
            let u = dir.appendingPathComponent(name + ".safetensors")
            let r = try runDiffuseCommand(["generate", "image", "--model", model, "--count", "2", "--threads", "1", "--raw", u.path,
                                           "--out", dir.appendingPathComponent(name).path] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try SafeTensorsFile(url: u).tensor("sample").scalars
        }
        let student = pd.appendingPathComponent("model").path
        let own = try raw(student, [], "own")
        XCTAssertEqual(own, try raw(student, ["--sampler", "ddim", "--steps", "2"], "explicit"))
        XCTAssertNotEqual(own, try raw(student, ["--steps", "3"], "three"))
        r = try runDiffuseCommand(["generate", "image", "--model", student, "--guidance", "4", "--out", dir.appendingPathComponent("g").path])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssert(r.stderr.contains("baked"), r.stderr)

        // --fast: an error saying how to make a student, then the student beside its teacher.
        r = try runDiffuseCommand(["generate", "image", "--model", teacherDir.path, "--fast", "--out", dir.appendingPathComponent("f").path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("diffuse distill image"), r.stderr)
        try FileManager.default.copyItem(at: pd.appendingPathComponent("model"), to: dir.appendingPathComponent("teacher-fast"))
        XCTAssertEqual(own, try raw(teacherDir.path, ["--fast"], "fast"))

        // A v-predicting student: its folders (stage 1's too) sample as v.
        r = try distill("pv", ["--student-steps", "2", "--grid", "4", "--student-prediction", "v_prediction", "--weighting", "snr+1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for folder in ["pv/model", "pv/stage-1-guidance/model"] {
            XCTAssertEqual(try PipelineFolder.scheduler(in: dir.appendingPathComponent(folder)).values["prediction_type"], .string("v_prediction"), folder)
        }
        XCTAssertEqual(try raw(dir.appendingPathComponent("pv/model").path, [], "v").count, 2 * 64)

        // Consistency: the LCM student; the run refuses to start over, and resumes (nothing left to do).
        r = try distill("cd", ["--method", "consistency"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let cd = dir.appendingPathComponent("cd/model")
        XCTAssertEqual(try PipelineFolder.scheduler(in: cd).className, "LCMScheduler")
        XCTAssertEqual(try DistillationInfo.load(cd)?.steps, 4)
        XCTAssertEqual(try raw(cd.path, [], "lcm").count, 2 * 64)
        r = try distill("cd", ["--method", "consistency"])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("--resume"), r.stderr)
        r = try distill("cd", ["--method", "consistency", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try distill("cd", ["--method", "consistency", "--resume", "--lr", "1e-3"])
        XCTAssertEqual(r.status, 1, "another recipe cannot resume this run")
        // A student is not a teacher.
        r = try runDiffuseCommand(["distill", "image", "--teacher", cd.path, "--out", dir.appendingPathComponent("x").path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("distilled student"), r.stderr)
    }

    /// A text-to-image teacher (the tiny pipeline of the SD goldens, 64×64): the student's unet
    /// takes the guidance scale as an input; it starts as the teacher's conditional prediction,
    /// learns a different prediction per scale, and samples in one call per step in diffusers'
    /// way (tested against diffusers in StableDiffusionPipelineTests).
    func testDistilTextToImageTeacherIntoAGuidanceInputStudent() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-distill-t2i-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let teacherDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ImageModelTests/Goldens/sd-pipeline/tiny")
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        var lines: [String] = []
        for (k, caption) in ["red square", "blue circle", "green bar", "yellow dot"].enumerated() {
            let img = Tensor(shape: [3, 64, 64], scalars: (0..<(3 * 64 * 64)).map { p in Float((p / 64 + k * 7 + p / 4096) % 5) / 2 - 1 })
            try PNGCodec.write(img, to: data.appendingPathComponent("\(k).png"))
            lines.append(#"{"file_name": "\#(k).png", "text": "\#(caption)"}"#)
        }
        try (lines.joined(separator: "\n") + "\n").write(to: data.appendingPathComponent("metadata.jsonl"), atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("run")
        func distill(_ extra: [String]) throws -> DiffuseResult {
            try runDiffuseCommand(["distill", "image", "--teacher", teacherDir.path, "--data", data.path, "--out", out.path,
                                   "--guidance-steps", "2", "--steps", "2", "--batch", "2", "--student-steps", "1", "--grid", "2",
                                   "--preview-every", "2", "--lr", "1e-3", "--threads", "1"] + extra)
        }
        var r = try distill(["--guidance-range", "9,2"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssert(r.stderr.contains("--guidance-range"), r.stderr)
        r = try distill([])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("takes --guidance 2.0-8.0"), r.stdout)
        for stage in ["stage-1-guidance", "stage-2-2to1"] {
            XCTAssert(FileManager.default.fileExists(atPath: out.appendingPathComponent("\(stage)/previews/step-2-1steps.png").path), stage)
        }
        let model = out.appendingPathComponent("model")
        let student = try StableDiffusionPipeline.load(model)
        XCTAssertEqual(student.unet.config.timeCondProjDim, TextToImageDistillation.guidanceEmbeddingDim)
        XCTAssertTrue(student.takesGuidanceScale)
        let info = try XCTUnwrap(student.distillation)
        XCTAssertEqual(info.guidanceRange, [2, 8])
        XCTAssertEqual(info.guidanceScale, TextToImageDistillation.defaultGuidance)
        XCTAssertEqual(student.defaultSteps, 1)
        XCTAssertEqual(student.defaultGuidance, 5)
        XCTAssertEqual(student.scheduler.className, "DDIMScheduler")

        // Stage 1 starts from the teacher: before training, the student is the teacher's conditional prediction at every scale.
        let teacher = try StableDiffusionPipeline.load(teacherDir)
        let subject = try TextToImageDistillation.Subject(teacher: teacher, images: Tensor.zeros([1, 3, 64, 64]), captions: ["red square"],
                                                          previewPrompts: [])
        let fresh = try subject.makeStudent(from: nil)
        var rng = RandomGenerator(seed: 4)
        let x = rng.normal([2, 4, 8, 8])
        subject.setGuidance([2, 7], on: fresh)
        XCTAssertEqual(fresh.predict(x, timesteps: [500, 500], labels: [0, 0]).scalars,
                       subject.teacher.predict(x, timesteps: [500, 500], labels: [0, 0]).scalars)
        // The trained student's prediction depends on the scale it is given.
        let trained = PromptTableDenoiser(unet: student.unet, table: subject.table, extra: nil)
        subject.setGuidance([2, 2], on: trained)
        let low = trained.predict(x, timesteps: [500, 500], labels: [0, 0])
        subject.setGuidance([8, 8], on: trained)
        XCTAssertNotEqual(low.scalars, trained.predict(x, timesteps: [500, 500], labels: [0, 0]).scalars)

        // generate --prompt: the student's own steps and default guidance; --guidance changes the image.
        func raw(_ extra: [String], _ name: String) throws -> [Float] {
            let u = dir.appendingPathComponent(name + ".safetensors")
            let r = try runDiffuseCommand(["generate", "image", "--model", model.path, "--prompt", "red square", "--threads", "1",
                                           "--raw", u.path, "--out", dir.appendingPathComponent(name + ".png").path] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try SafeTensorsFile(url: u).tensor("latents").scalars
        }
        let own = try raw([], "own")
        XCTAssertEqual(own, try raw(["--steps", "1", "--guidance", "5", "--sampler", "ddim"], "explicit"))
        XCTAssertNotEqual(own, try raw(["--guidance", "3"], "three"))
        // Resuming a finished run does nothing more.
        r = try distill(["--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // --fast with no student beside the teacher says how to make one.
        r = try runDiffuseCommand(["generate", "image", "--model", teacherDir.path, "--prompt", "red square", "--fast",
                                   "--out", dir.appendingPathComponent("f.png").path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssert(r.stderr.contains("diffuse distill image") && r.stderr.contains("--data"), r.stderr)
        // A class teacher's student has its scale baked in: --guidance-range is refused.
        r = try runDiffuseCommand(["distill", "image", "--guidance-range", "2,8", "--out", dir.appendingPathComponent("x").path])
        XCTAssertEqual(r.status, 64, r.stderr)
    }

    /// Every bundled student (samples/NAME-fast) records its bundled teacher, has the teacher's
    /// unet config (a class model's guidance baked in) and a few-step scheduler of its method.
    func testBundledStudentsBesideTheirTeachers() throws {
        let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("samples")
        let students = try FileManager.default.contentsOfDirectory(atPath: samples.path).filter { $0.hasSuffix("-fast") }.sorted()
        XCTAssert(students.contains("image-fast"), "\(students)")
        for name in students {
            let dir = samples.appendingPathComponent(name)
            let teacherName = String(name.dropLast("-fast".count))
            let info = try XCTUnwrap(try DistillationInfo.load(dir), name)
            XCTAssertEqual(info.teacher, "samples/\(teacherName)", name)
            XCTAssertEqual(BundledModels.student(of: samples.appendingPathComponent(teacherName))?.standardizedFileURL, dir.standardizedFileURL, name)
            let scheduler = try PipelineFolder.scheduler(in: dir)
            XCTAssertEqual(scheduler.className, info.method == .progressive ? "DDIMScheduler" : "LCMScheduler", name)
            XCTAssertLessThanOrEqual(info.steps, 8, name)
            func unetConfig(_ d: URL) throws -> [String: Any] {
                var c = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: d.appendingPathComponent("unet/config.json"))) as? [String: Any])
                c["_diffusers_version"] = nil
                if info.guidanceRange != nil { c["time_cond_proj_dim"] = nil }  // a text-to-image student adds the guidance input
                return c
            }
            XCTAssertEqual(NSDictionary(dictionary: try unetConfig(dir)), NSDictionary(dictionary: try unetConfig(samples.appendingPathComponent(teacherName))), name)
        }
    }
}
