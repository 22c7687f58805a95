import ArgumentParser
import Foundation
import Audio

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure generated samples.",
        subcommands: [EvaluateAudio.self]
    )
}

struct EvaluateAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "Pitch accuracy (YIN, when class folders are MIDI numbers), voicing, clipping and silence of clips.",
        discussion: """
        Reads DIR/<class>/*.wav|flac|ogg (as `diffuse generate audio --out DIR` and `diffuse dataset \
        notes` write them; a flat folder of NNNN-<class>.wav files works too). With --real, the \
        same figures for the real set are printed beside them.
        """
    )

    @Option(help: "Generated clips.") var generated: String
    @Option(help: "Real clips, measured the same way for comparison.") var real: String?
    @Option(help: "Sample rate the clips are measured at.") var rate = 16_000
    @Option(help: "Seconds of each clip measured.") var seconds = 1.0
    @Flag(help: "JSON output.") var json = false

    func measure(_ path: String) throws -> AudioMetrics {
        let url = URL(fileURLWithPath: path)
        let folder = try ClassFolder(url, extensions: AudioFolder.extensions)
        if !folder.classNames.isEmpty { return try AudioMetrics.measure(folder: url, sampleRate: rate, seconds: seconds) }
        // Flat: the class is what follows the first '-' of the name (generate's NNNN-<class>.wav).
        let f = try AudioFolder(url, sampleRate: rate, length: Int(seconds * Double(rate)))
        f.warn = { _ in }
        let clips = (0..<f.count).map { i -> ([Float], String?) in
            let stem = f.files[i].url.deletingPathExtension().lastPathComponent
            return (f.clip(i), stem.split(separator: "-", maxSplits: 1).dropFirst().first.map(String.init))
        }
        return AudioMetrics.measure(clips, sampleRate: rate)
    }

    func run() throws {
        let g = try measure(generated)
        let r = try real.map(measure)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            var obj: [String: AudioMetrics] = ["generated": g]
            if let r { obj["real"] = r }
            print(String(decoding: try enc.encode(obj), as: UTF8.self))
        } else {
            print("generated (\(generated)):\n" + g.summary.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            if let r, let real { print("real (\(real)):\n" + r.summary.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")) }
        }
    }
}
