import XCTest
import Tensor
final class SmokeTests: XCTestCase { func testOnes() { XCTAssertEqual(Tensor.ones([3]).scalars, [1, 1, 1]) } }
