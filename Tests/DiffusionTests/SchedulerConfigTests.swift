import Foundation
import XCTest
import Tensor
import TestSupport
@testable import Diffusion
import NN

/// `scheduler_config.json` read and written in diffusers' format, and sampler switching that
/// carries settings over exactly like `XScheduler.from_config(config)`.
final class SchedulerConfigTests: XCTestCase {
    struct Conversions: Decodable {
        struct Entry: Decodable {
            let name: String
            let source: String
            let targets: [String: String]
        }
        let conversions: [Entry]
    }

    func testEveryGoldenConfigRoundTrips() throws {
        for cls in SchedulerClass.allCases {
            for c in try SchedulerGoldenTests.load(cls).cases {
                let a = try SchedulerConfig.decode(Data(c.config_text.utf8))
                let b = try SchedulerConfig.decode(a.jsonData())
                XCTAssertEqual(a, b, "\(cls.rawValue) \(c.name)")
                XCTAssertTrue(a.defaultedKeys.isEmpty, "a saved file gives every key: \(cls.rawValue) \(c.name)")
            }
        }
    }

    func testUnknownKeysAndPythonInfinityAreKept() throws {
        let text = """
        {"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.42.1",
         "lambda_min_clipped": -Infinity, "my_key": {"nested": [1, "two", null]}, "note": "-Infinity inside a string"}
        """
        let c = try SchedulerConfig.decode(Data(text.utf8))
        XCTAssertEqual(c.values["lambda_min_clipped"], .number(-.infinity))
        XCTAssertEqual(c.values["my_key"], .object(["nested": .array([.number(1), .string("two"), .null])]))
        let written = String(decoding: try c.jsonData(), as: UTF8.self)
        XCTAssertTrue(written.contains("\"lambda_min_clipped\" : -Infinity"), written)
        XCTAssertEqual(try SchedulerConfig.decode(Data(written.utf8)), c)
        XCTAssertEqual(c.defaultedKeys.contains("solver_order"), true)
    }

    func testSwitchingSamplerMatchesDiffusersFromConfig() throws {
        let url = SchedulerGoldenTests.goldenURL("conversions.json")
        let file = try JSONDecoder().decode(Conversions.self, from: Data(contentsOf: url))
        XCTAssertEqual(file.conversions.count, 5)
        for e in file.conversions {
            let source = try SchedulerConfig.decode(Data(e.source.utf8))
            XCTAssertEqual(e.targets.count, SchedulerClass.allCases.count)
            for cls in SchedulerClass.allCases {
                let ref = try SchedulerConfig.decode(Data(e.targets[cls.rawValue]!.utf8))
                let ours = source.converted(to: cls)
                var a = ours.values, b = ref.values
                a["_diffusers_version"] = nil
                b["_diffusers_version"] = nil
                XCTAssertEqual(Set(a.keys), Set(b.keys), "\(e.name) -> \(cls.rawValue): keys")
                for (k, v) in b where a[k] != v {
                    XCTFail("\(e.name) -> \(cls.rawValue): \(k) = \(String(describing: a[k])), diffusers has \(v)")
                }
                // and the sampler built from it runs the same steps
                let s1 = try makeSampler(ours, steps: 10), s2 = try makeSampler(ref, steps: 10)
                XCTAssertEqual(s1.timesteps, s2.timesteps, "\(e.name) -> \(cls.rawValue)")
            }
        }
    }

    func testSamplerNamesMapToClassesAndOptions() throws {
        XCTAssertEqual(SamplerName.allCases.map(\.rawValue),
                       ["ddpm", "ddim", "dpm++2m", "dpm++2m-karras", "dpm++2m-sde", "dpm++2m-sde-karras", "euler", "euler-a", "heun", "unipc", "pndm", "lms",
                        "lcm", "tcd"])
        let base = SchedulerConfig(.ddpm, ["beta_schedule": .string("scaled_linear"), "prediction_type": .string("v_prediction")])
        for name in SamplerName.allCases {
            let c = name.config(from: base)
            XCTAssertEqual(c.className, name.schedulerClass.rawValue)
            XCTAssertEqual(c.values["beta_schedule"], .string("scaled_linear"), "\(name): settings carry over")
            XCTAssertEqual(c.values["prediction_type"], .string("v_prediction"), "\(name)")
            let s = try makeSampler(c, steps: 8)
            XCTAssertEqual(type(of: s).schedulerClass, name.schedulerClass)
        }
        let karras = try XCTUnwrap(try makeSampler(SamplerName.dpmpp2mKarras.config(from: base), steps: 8) as? DPMSolverMultistepSampler)
        let plain = try XCTUnwrap(try makeSampler(SamplerName.dpmpp2m.config(from: base), steps: 8) as? DPMSolverMultistepSampler)
        XCTAssertNotEqual(karras.sigmas, plain.sigmas)
        let sde = try XCTUnwrap(try makeSampler(SamplerName.dpmpp2mSDE.config(from: base), steps: 8) as? DPMSolverMultistepSampler)
        XCTAssertEqual(sde.algorithm, .sdeDPMSolverPP)
        // switching back from a Karras config to plain dpm++2m turns Karras off again
        XCTAssertEqual(SamplerName.dpmpp2m.config(from: SamplerName.dpmpp2mKarras.config(from: base)).values["use_karras_sigmas"], .bool(false))
    }

    func testBadFilesThrowNamingTheKey() {
        XCTAssertThrowsError(try SchedulerConfig.decode(Data(#"{"_class_name": "DEISMultistepScheduler"}"#.utf8)).schedulerClass()) { e in
            XCTAssertEqual(e as? SchedulerConfigError, .unknownClass("DEISMultistepScheduler"))
            XCTAssertTrue("\(e)".contains("DDIMScheduler"))
        }
        XCTAssertThrowsError(try SchedulerConfig.decode(Data(#"{"beta_schedule": "linear"}"#.utf8)))
        let bad = SchedulerConfig(.ddim, ["beta_schedule": .string("cubic")])
        XCTAssertThrowsError(try makeSampler(bad, steps: 10)) { e in
            XCTAssertTrue("\(e)".contains("beta_schedule"), "\(e)")
            XCTAssertTrue("\(e)".contains("squaredcos_cap_v2"), "\(e)")
        }
        XCTAssertThrowsError(try makeSampler(SchedulerConfig(.ddim, ["num_train_timesteps": .string("many")]), steps: 10)) { e in
            XCTAssertTrue("\(e)".contains("num_train_timesteps"), "\(e)")
        }
        XCTAssertThrowsError(try makeSampler(SchedulerConfig(.eulerDiscrete), steps: 0))
        XCTAssertThrowsError(try makeSampler(SchedulerConfig(.eulerDiscrete), steps: 1001))
        XCTAssertThrowsError(try makeSampler(SchedulerConfig(.ddim, ["trained_betas": .array([.number(0.1)])]), steps: 10)) { e in
            XCTAssertTrue("\(e)".contains("trained_betas"), "\(e)")
        }
    }

    /// A student's folder selects its sampler by itself, and writes it back unchanged.
    func testConsistencyFoldersRoundTripAndAreTheDefaultSampler() throws {
        for (cls, name) in [(SchedulerClass.lcm, SamplerName.lcm), (.tcd, .tcd)] {
            let text = #"{"_class_name": "\#(cls.rawValue)", "original_inference_steps": 25, "timestep_scaling": 5.0, "my_key": 1}"#
            let c = try SchedulerConfig.decode(Data(text.utf8))
            XCTAssertEqual(c.values["beta_schedule"], .string("scaled_linear"), "the class's own defaults fill the rest")
            XCTAssertEqual(try SchedulerConfig.decode(c.jsonData()), c)
            XCTAssertEqual(SamplerName.default(for: c), name)
            XCTAssertEqual(name.config(from: c), c, "--sampler \(name.rawValue) on its own folder changes nothing")
            XCTAssertEqual(type(of: try makeSampler(c, steps: 4)).schedulerClass, cls)
        }
        XCTAssertEqual(SamplerName.default(for: SchedulerConfig(.ddpm)), .dpmpp2m)
        XCTAssertEqual(SamplerName.default(for: SchedulerConfig(.eulerDiscrete)), .dpmpp2m)
        // A progressively distilled student's DDIM steps are what it was trained for.
        XCTAssertEqual(SamplerName.default(for: SchedulerConfig(.ddim)), .ddim)
    }

    /// What diffusers' LCMScheduler / TCDScheduler refuse (or would divide by zero on) throws,
    /// naming the key; keys they never read are accepted as they are.
    func testConsistencySamplerErrorsNameTheKey() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        for cls in [SchedulerClass.lcm, .tcd] {
            for (key, value) in [("original_inference_steps", JSONValue.number(0)), ("original_inference_steps", .number(1001)),
                                 ("original_inference_steps", .number(2.5)), ("beta_schedule", .string("sigmoid"))] {
                let m = message { try makeSampler(SchedulerConfig(cls, [key: value]), steps: 1) }
                XCTAssertTrue(m.contains(key), "\(cls) \(key): \(m)")
            }
            // more steps than the distillation grid has (50 by default; 20 at strength 0.4)
            XCTAssertTrue(message { try makeSampler(SchedulerConfig(cls), steps: 51) }.contains("original_inference_steps"))
            XCTAssertTrue(message { try LCMSampler(config: SchedulerConfig(.lcm), steps: 21, strength: 0.4) }.contains("strength"))
            XCTAssertTrue(message { try TCDSampler(config: SchedulerConfig(.tcd), steps: 4, gamma: 0.3, strength: 0) }.contains("strength"))
            XCTAssertNoThrow(try makeSampler(SchedulerConfig(cls, ["timestep_spacing": .string("anything"), "steps_offset": .number(3)]), steps: 4))
            XCTAssertNoThrow(try makeSampler(SchedulerConfig(cls, ["trained_betas": .array([JSONValue](repeating: .number(0.01), count: 1000)),
                                                                   "beta_schedule": .string("sigmoid")]), steps: 4))
        }
        XCTAssertTrue(message { try makeSampler(SchedulerConfig(.lcm, ["timestep_scaling": .number(-1)]), steps: 4) }.contains("timestep_scaling"))
        XCTAssertTrue(message { try makeSampler(SchedulerConfig(.tcd), steps: 4, eta: 1.5) }.contains("gamma"))
        XCTAssertTrue(message { try makeSampler(SchedulerConfig(.lcm, ["prediction_type": .string("flow")]), steps: 4) }.contains("prediction_type"))
        XCTAssertTrue(message { try makeSampler(SchedulerConfig(.tcd, ["prediction_type": .string("flow")]), steps: 4) }.contains("prediction_type"))
    }
}
