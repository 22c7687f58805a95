import XCTest
@testable import Serve
