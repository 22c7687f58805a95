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
        XCTAssertEqual(file.conversions.count, 4)
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
                       ["ddpm", "ddim", "dpm++2m", "dpm++2m-karras", "dpm++2m-sde", "dpm++2m-sde-karras", "euler", "euler-a", "heun", "unipc", "pndm", "lms"])
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
        XCTAssertThrowsError(try SchedulerConfig.decode(Data(#"{"_class_name": "LCMScheduler"}"#.utf8)).schedulerClass()) { e in
            XCTAssertEqual(e as? SchedulerConfigError, .unknownClass("LCMScheduler"))
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
}
