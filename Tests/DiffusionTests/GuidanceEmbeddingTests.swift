import Foundation
import XCTest
import Tensor
@testable import Diffusion

/// `guidanceScaleEmbedding` against diffusers' `get_guidance_scale_embedding`
/// (Tests/References/make_scheduler_goldens.py → Goldens/guidance_embedding.json).
///
/// The bound is one float32 rounding of the frequency, carried through the argument 1000 w f:
/// torch's vectorised `exp` is not correctly rounded (on the generating machine 3 of the 128
/// frequencies of dim 256 are 1 ulp off glibc's), and at w = 7.5 one ulp of f moves sin/cos by
/// up to 7500 · 2⁻²⁴ ≈ 4.5e-4; the worst seen is 1.5e-5. Small w are held to 1e-6.
final class GuidanceEmbeddingTests: XCTestCase {
    struct File: Decodable {
        struct Case: Decodable {
            let w: [Float]
            let dim: Int
            let embedding: [Float]
        }
        let cases: [Case]
    }

    func testMatchesDiffusers() throws {
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: SchedulerGoldenTests.goldenURL("guidance_embedding.json")))
        XCTAssertEqual(file.cases.count, 4)
        var worst: Float = 0
        for c in file.cases {
            let e = guidanceScaleEmbedding(c.w, dim: c.dim)
            XCTAssertEqual(e.shape, [c.w.count, c.dim])
            let err = zip(e.scalars, c.embedding).map { Swift.abs($0 - $1) }.max() ?? 0
            let bound = 1e-6 + 1000 * (c.w.map(Swift.abs).max() ?? 0) * 0x1p-24
            XCTAssertLessThanOrEqual(err, bound, "w \(c.w), dim \(c.dim)")
            worst = Swift.max(worst, err)
        }
        print("guidance embedding: worst abs error \(worst)")
    }
}
