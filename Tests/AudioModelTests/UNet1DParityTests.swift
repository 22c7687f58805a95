import XCTest
import Foundation
import Tensor
import NN
import Audio
import TestSupport

final class UNet1DParityTests: XCTestCase {
    func testBuilds() throws {
        let m = try UNet1DModel(config: UNet1DConfig())
        print(m.parameterCount)
    }
}
