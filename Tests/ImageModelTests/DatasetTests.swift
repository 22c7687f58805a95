import XCTest
import Foundation
import Tensor
import Image

final class FashionMNISTTests: XCTestCase {
    func testLoadsDebiansFashionMNIST() throws {
        let train = try FashionMNIST(train: true)
        XCTAssertEqual(train.count, 60_000)
        XCTAssertEqual(train.classNames.count, 10)
        let test = try FashionMNIST(train: false)
        XCTAssertEqual(test.count, 10_000)
        var counts = [Int](repeating: 0, count: 10)
        for i in 0..<train.count { counts[train.label(i)] += 1 }
        XCTAssertEqual(counts, [Int](repeating: 6000, count: 10), "Fashion-MNIST is balanced")
        let (x, labels) = try train.batch([0, 1, 59_999])
        XCTAssertEqual(x.shape, [3, 1, 32, 32])
        XCTAssertEqual(labels.count, 3)
        XCTAssert(x.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
        // The 2-pixel border is background; the item itself is not empty.
        XCTAssertEqual(x.data[0], -1)
        XCTAssertGreaterThan(x.scalars.filter { $0 > 0 }.count, 100)
    }

    func testMalformedIDXFilesAreErrorsNamingTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("idx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("bad magic", [1, 2, 3, 4, 0, 0, 0, 1, 5]),
            ("not bytes", [0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
            ("zero dims", [0, 0, 8, 0]),
            ("zero size", [0, 0, 8, 1, 0, 0, 0, 0]),
            ("absurd size", [0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28]),
            ("truncated", [0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3]),
        ]
        for (name, bytes) in cases {
            let u = dir.appendingPathComponent(name.replacingOccurrences(of: " ", with: "-"))
            try Data(bytes).write(to: u)
            XCTAssertThrowsError(try IDXReader.read(u), name) { e in
                XCTAssert("\(e)".contains(u.path), "\(name): \(e)")
            }
        }
        XCTAssertThrowsError(try IDXReader.read(dir.appendingPathComponent("missing")))
    }
}
