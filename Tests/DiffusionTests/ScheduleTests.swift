import Foundation
import XCTest
import Tensor
import TestSupport
@testable import Diffusion
import NN

/// β and ᾱ against diffusers (bit for bit where torch's float32 arithmetic allows), and the
/// NumPy/torch routines the step lists are built from.
final class ScheduleTests: XCTestCase {
    struct File: Decodable {
        struct Entry: Decodable {
            let name: String
            let config: [String: JSONValue]
            let betas: [Float]
            let alphas_cumprod: [Float]
        }
        let schedules: [Entry]
    }

    func testBetasAndAlphasCumprodMatchDiffusers() throws {
        let url = SchedulerGoldenTests.goldenURL("schedules.json")
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
        XCTAssertEqual(file.schedules.count, 7)
        for e in file.schedules {
            let config = SchedulerConfig(.ddpm, e.config)
            let s = try config.noiseSchedule()
            XCTAssertEqual(s.betasF.count, e.betas.count, e.name)
            // relative error in units of float32 epsilon; 0 means bit-identical
            func ulps(_ a: [Float], _ b: [Float]) -> Float {
                zip(a, b).map { x, y in y == 0 ? Swift.abs(x) / Float.ulpOfOne : Swift.abs(x - y) / (Swift.abs(y) * Float.ulpOfOne) }.max() ?? 0
            }
            let bu = ulps(s.betasF, e.betas), au = ulps(s.alphasCumprodF, e.alphas_cumprod)
            if e.name.hasSuffix("zsnr") {
                // The rescale runs torch's vectorised sqrt, which is not correctly rounded here
                // (1 ulp); β = 1 − ᾱ_t/ᾱ_{t−1} then loses the leading digits.
                let db = zip(s.betasF, e.betas).map { Swift.abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(db, 5e-6, "\(e.name): betas")
                XCTAssertLessThanOrEqual(au * Float.ulpOfOne, 1e-5, "\(e.name): alphas_cumprod")
            } else {
                // bit-identical, except sigmoid's exp (torch's vectorised exp may differ by an ulp)
                XCTAssertLessThanOrEqual(bu, e.name == "sigmoid" ? 2 : 0, "\(e.name): betas")
                XCTAssertLessThanOrEqual(au, e.name == "sigmoid" ? 4 : 0, "\(e.name): alphas_cumprod")
            }
            if e.name.hasSuffix("zsnr") { XCTAssertEqual(s.alphasCumprodF.last, 0, e.name) }
        }
    }

    func testTorchLinspaceKeepsItsEndpoints() {
        // bit-exactness against torch is checked through the betas above
        let t = Reference.torchLinspaceFloat32(0.0001, 0.02, 7)
        XCTAssertEqual(t.first, Float(0.0001))
        XCTAssertEqual(t.last, Float(0.02))
        XCTAssertEqual(t.count, 7)
    }

    func testNumpyRoundingAndArange() {
        XCTAssertEqual(Reference.round(937.5), 938)
        XCTAssertEqual(Reference.round(812.5), 812)
        XCTAssertEqual(Reference.arange(1000, 0, -62.5).count, 16)
        XCTAssertEqual(TimestepSpacing.trailing.discrete(steps: 16, trainSteps: 1000, offset: 0).prefix(3), [999, 937, 874])
        XCTAssertEqual(TimestepSpacing.leading.discrete(steps: 10, trainSteps: 1000, offset: 1), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
        XCTAssertEqual(TimestepSpacing.linspace.discrete(steps: 4, trainSteps: 1000, offset: 0), [999, 666, 333, 0])
    }

    func testKarrasSigmasEndAtTheRange() {
        let s = SigmaSpacing.karras.sigmas(min: 0.03, max: 80, count: 10)
        XCTAssertEqual(s.first!, 80, accuracy: 1e-9)
        XCTAssertEqual(s.last!, 0.03, accuracy: 1e-9)
        XCTAssertTrue(zip(s, s.dropFirst()).allSatisfy { $0 > $1 })
        let e = SigmaSpacing.exponential.sigmas(min: 0.03, max: 80, count: 5)
        let ratios = zip(e, e.dropFirst()).map { $0 / $1 }
        for r in ratios { XCTAssertEqual(r, ratios[0], accuracy: 1e-9) }
    }

    func testParameterizationRoundTrips() {
        let x0 = randomTensor([2, 3, 4], seed: 1), eps = randomTensor([2, 3, 4], seed: 2)
        let a: Float = 0.6, s: Float = 0.8
        let x = a * x0 + s * eps
        for p in PredictionType.allCases {
            let param = Parameterization(p)
            let target = param.target(x0: x0, noise: eps, alpha: a, sigma: s)
            let back = param.x0(target, x: x, alpha: a, sigma: s)
            assertClose(back, x0, atol: 1e-5, rtol: 1e-5, "\(p)")
            let e = param.epsilon(target, x: x, x0: back, alpha: a, sigma: s)
            assertClose(e, eps, atol: 1e-5, rtol: 1e-5, "\(p)")
        }
    }

    func testDynamicThresholdingClampsEachSample() {
        let x = Tensor(shape: [2, 4], scalars: [0.1, -3, 2, 0.5, 0.1, 0.2, -0.3, 0.4])
        let p = Parameterization(.sample, clipping: .dynamicThreshold(ratio: 0.5, maxValue: 10))
        let y = p.clip(x)
        // sample 0: quantile(|x|, 0.5) = 1.25 → clamp to ±1.25 and divide; sample 1: s = 1
        assertClose(y, [0.08, -1, 1, 0.4, 0.1, 0.2, -0.3, 0.4], atol: 1e-6)
    }
}
