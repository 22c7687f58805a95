@testable import Audio
import Image
import Foundation
import Tensor
import XCTest

final class PitchTests: XCTestCase {
    func tone(_ f: Double, rate: Int = 16_000, seconds: Double = 0.5, harmonics: Int = 1) -> [Float] {
        (0..<Int(Double(rate) * seconds)).map { i in
            let t = Double(i) / Double(rate)
            return Float((1...harmonics).reduce(0.0) { $0 + sin(2 * .pi * f * Double($1) * t) / Double($1) } * 0.5)
        }
    }

    func testYINFindsThePitchOfSinesAndHarmonicTones() {
        for midi in [45.0, 48, 60, 61.3, 72, 79] {
            for h in [1, 6] {
                let e = Pitch.estimate(tone(Pitch.frequency(midi: midi), harmonics: h), sampleRate: 16_000)
                XCTAssertEqual(e.voicedFraction, 1, accuracy: 1e-9)
                XCTAssertLessThan(abs(Pitch.cents(e.frequency ?? 0, from: midi)), 5, "midi \(midi) harmonics \(h)")
            }
        }
    }

    func testSilenceAndNoiseAreUnvoiced() {
        XCTAssertNil(Pitch.estimate([Float](repeating: 0, count: 8000), sampleRate: 16_000).frequency)
        var rng = RandomGenerator(seed: 3)
        let noise = rng.normal([1, 8000]).scalars.map { $0 * 0.3 }
        XCTAssertLessThan(Pitch.estimate(noise, sampleRate: 16_000).voicedFraction, 0.2)
    }
}

final class AudioDatasetTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("audio-ds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func testMIDIFileLayout() {
        let m = MIDIFile.notes(program: 40, notes: [(60, 100), (62, 90)], slotSeconds: 2, holdSeconds: 0.5).bytes
        XCTAssertEqual(Array(m[0..<14]), Array("MThd".utf8) + [0, 0, 0, 6, 0, 0, 0, 1, 0x01, 0xE0])
        XCTAssertEqual(Array(m[14..<18]), Array("MTrk".utf8))
        let length = m[18..<22].reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(length, m.count - 22)
        // program change, note on at 0, note off after 480 ticks (0.5 s: VLQ 0x83 0x60)
        XCTAssertEqual(Array(m[22..<33]), [0x00, 0xC0, 40, 0x00, 0x90, 60, 100, 0x83, 0x60, 0x80, 60])
        XCTAssertEqual(Array(m.suffix(3)), [0xFF, 0x2F, 0x00])
    }

    func testRenderedNotesCarryTheirPitch() throws {
        var o = AudioDatasets.NotesOptions()
        o.pitches = 57...60
        o.instruments = [.init("piano", 0), .init("flute", 73)]
        o.velocities = [100]
        XCTAssertEqual(try AudioDatasets.renderNotes(to: dir, options: o), 8)
        XCTAssertEqual(try AudioDatasets.renderNotes(to: dir, options: o), 0, "files present are kept")
        let folder = try AudioFolder(dir, sampleRate: 16_000, length: 16_000)
        XCTAssertEqual(folder.classNames, ["57", "58", "59", "60"])
        XCTAssertEqual(folder.count, 8)
        for i in 0..<folder.count {
            let x = folder.clip(i)
            let peak = x.map { abs($0) }.max()!
            XCTAssertEqual(peak, 0.9, accuracy: 0.01)
            let e = Pitch.estimate(Array(x[0..<8000]), sampleRate: 16_000)
            let midi = Double(folder.classNames[folder.label(i)])!
            XCTAssertLessThan(abs(Pitch.cents(e.frequency ?? 1, from: midi)), 50, "\(folder.files[i].url.lastPathComponent)")
        }
    }

    func testSpokenDigits() throws {
        var o = AudioDatasets.DigitsOptions()
        o.perDigit = 1
        XCTAssertEqual(try AudioDatasets.renderDigits(to: dir, options: o), 10)
        let folder = try AudioFolder(dir, sampleRate: 8_000, length: 8_000)
        XCTAssertEqual(folder.classNames, AudioDatasets.digitWords.sorted())
        let (x, labels) = folder.batch(Array(0..<10))
        XCTAssertEqual(x.shape, [10, 1, 8000])
        XCTAssertEqual(labels, Array(0..<10))
        for i in 0..<10 {
            let clip = Array(x.scalars[(i * 8000)..<((i + 1) * 8000)])
            XCTAssertGreaterThan(clip.map { abs($0) }.max()!, 0.5, "resampled speech keeps its level")
        }
    }

    func testAudioFolderCropsPadsMixesAndSkipsBadFiles() throws {
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        for d in [a, b] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        let stereo = Tensor(shape: [2, 10], scalars: (0..<20).map { $0 < 10 ? 0.5 : -0.25 })
        try AudioCodec.write(AudioClip(samples: stereo, sampleRate: 8000), to: a.appendingPathComponent("s.wav"), format: .float32)
        try AudioCodec.write(AudioClip(samples: Tensor(shape: [1, 3], scalars: [0.1, 0.2, 0.3]), sampleRate: 8000),
                             to: b.appendingPathComponent("short.flac"))
        try Data("RIFF nonsense".utf8).write(to: b.appendingPathComponent("broken.wav"))
        try Data("ignored".utf8).write(to: b.appendingPathComponent("notes.txt"))
        let f = try AudioFolder(dir, sampleRate: 8000, length: 6)
        var warnings: [String] = []
        f.warn = { warnings.append($0) }
        XCTAssertEqual(f.count, 3)
        let (x, labels) = f.batch([0, 1, 2])
        XCTAssertEqual(labels, [0, 1, 1])
        let v = x.scalars
        for j in 0..<6 { XCTAssertEqual(v[j], 0.125, accuracy: 1e-6) }          // mono mix, cropped
        XCTAssertEqual(Array(v[6..<12]), [0, 0, 0, 0, 0, 0])                   // broken.wav: silence
        XCTAssertEqual(v[12], 0.1, accuracy: 1e-3); XCTAssertEqual(v[15], 0)   // short.flac: padded
        XCTAssertEqual(warnings.count, 1)
        XCTAssert(warnings[0].contains("broken.wav"), warnings[0])
        _ = f.batch([1])
        XCTAssertEqual(warnings.count, 1, "a bad file warns once")
    }
}

final class SpectrogramTests: XCTestCase {
    func testFFTMatchesTheDFT() {
        let n = 16
        var re = (0..<n).map { Float(sin(Double($0) * 0.7) + 0.3 * Double($0 % 3)) }, im = [Float](repeating: 0, count: n)
        let x = re
        FFT.transform(&re, &im)
        for k in 0..<n {
            var r = 0.0, i = 0.0
            for j in 0..<n { r += Double(x[j]) * cos(-2 * .pi * Double(j * k) / Double(n)); i += Double(x[j]) * sin(-2 * .pi * Double(j * k) / Double(n)) }
            XCTAssertEqual(Double(re[k]), r, accuracy: 1e-4); XCTAssertEqual(Double(im[k]), i, accuracy: 1e-4)
        }
    }

    func testASinePeaksInItsBinWithLowFrequenciesAtTheBottom() throws {
        // 1 kHz at 16 kHz with 512-point frames: bin 32.
        let x = (0..<4000).map { Float(sin(2 * Double.pi * 1000 * Double($0) / 16_000)) }
        let db = Spectrogram.decibels(x)
        XCTAssertEqual(db.count, 257)
        let mid = db[0].count / 2
        XCTAssertEqual((0..<257).max { db[$0][mid] < db[$1][mid] }, 32)
        let img = Spectrogram.image(x)
        XCTAssertEqual(img.data[(256 - 32) * img.shape[2] + mid], 1, accuracy: 1e-6)
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("spec-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: u) }
        try Spectrogram.write([x, x], to: u)
        XCTAssertEqual(try PNGCodec.read(u, mode: .gray).shape, [1, 257, 2 * db[0].count + 4])
    }
}
