import Audio
import Foundation
import Tensor
import XCTest

final class ResamplerTests: XCTestCase {
    /// Largest error against the ideal sine at the new rate, away from the zero-padded edges.
    func sineError(from: Int, to: Int, frequency: Double, seconds: Double = 0.25) -> Float {
        let n = Int(Double(from) * seconds)
        let x = sines(channels: 1, length: n, rate: from, frequency: frequency, amp: 0.5)
        let y = Resampler(from: from, to: to).process(x)
        let want = sines(channels: 1, length: y.shape[1], rate: to, frequency: frequency, amp: 0.5).scalars
        let margin = to / 200 + 1   // 5 ms: more than the kernel half-width at these rates
        return maxAbsDiff(Array(y.scalars[margin..<(y.shape[1] - margin)]), Array(want[margin..<(y.shape[1] - margin)]))
    }

    func testLengthIsCeilOfTheRatio() {
        XCTAssertEqual(Resampler(from: 44100, to: 16000).outputLength(44100), 16000)
        XCTAssertEqual(Resampler(from: 44100, to: 16000).outputLength(10), 4)
        XCTAssertEqual(Resampler(from: 16000, to: 48000).outputLength(7), 21)
        let y = Resampler(from: 22050, to: 16000).process(Tensor.zeros([2, 1001]))
        XCTAssertEqual(y.shape, [2, 727])
    }

    func testPassbandSinesSurviveDownAndUpsampling() {
        XCTAssertLessThan(sineError(from: 44100, to: 16000, frequency: 1000), 2e-3)
        XCTAssertLessThan(sineError(from: 48000, to: 22050, frequency: 3000), 2e-3)
        XCTAssertLessThan(sineError(from: 16000, to: 48000, frequency: 1000), 2e-3)
        XCTAssertLessThan(sineError(from: 8000, to: 44100, frequency: 3000), 2e-3)
    }

    func testToneAboveTheNewNyquistIsRemoved() {
        // 12 kHz at 44.1 kHz would alias to 4 kHz at 16 kHz: it must be filtered out (-80 dB).
        let x = sines(channels: 1, length: 11025, rate: 44100, frequency: 12000, amp: 1)
        let y = Resampler(from: 44100, to: 16000).process(x).scalars
        let inner = y[400..<(y.count - 400)]
        let rms = (inner.map { Double($0 * $0) }.reduce(0, +) / Double(inner.count)).squareRoot()
        XCTAssertLessThan(20 * log10(rms / 0.7071), -80)
    }

    func testDCPassesExactly() {
        let y = Resampler(from: 11025, to: 16000).process(Tensor.full([1, 2000], 0.5)).scalars
        XCTAssertLessThan(maxAbsDiff(Array(y[100..<2800]), Array(repeating: 0.5, count: 2700)), 1e-5)
    }

    func testUnreducibleRatioUsesTheDirectKernel() {
        // gcd 1 and a huge phase count: taps are computed per output instead of tabulated.
        XCTAssertLessThan(sineError(from: 8000, to: 200_003, frequency: 500, seconds: 0.02), 2e-3)
    }

    func testClipResampledKeepsChannelsAndRate() {
        let clip = AudioClip(samples: Tensor.zeros([2, 441]), sampleRate: 44100).resampled(to: 16000)
        XCTAssertEqual(clip.samples.shape, [2, 160])
        XCTAssertEqual(clip.sampleRate, 16000)
    }
}
