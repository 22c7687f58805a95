import Foundation
import Tensor

/// Labelled audio sets rendered on this machine with free tools, one folder per class:
/// pitched instrument notes (fluidsynth + the General-MIDI soundfont) and spoken digits
/// (espeak-ng). Files are 16 kHz mono PCM16 WAV, written atomically; files already present are
/// kept, so an interrupted render resumes.
public enum AudioDatasets {
    /// A General-MIDI program by name.
    public struct Instrument: Sendable, Equatable {
        public var name: String
        public var program: Int
        public init(_ name: String, _ program: Int) { self.name = name; self.program = program }
    }

    /// Twelve instruments with different timbres and envelopes (plucked, struck, bowed, blown).
    public static let defaultInstruments: [Instrument] = [
        .init("piano", 0), .init("electric-piano", 4), .init("vibraphone", 11), .init("marimba", 12),
        .init("organ", 19), .init("nylon-guitar", 24), .init("steel-guitar", 25), .init("violin", 40),
        .init("cello", 42), .init("harp", 46), .init("trumpet", 56), .init("flute", 73),
    ]

    public struct NotesOptions: Sendable {
        public var pitches: ClosedRange<Int> = 48...72        // C3 ... C5
        public var instruments: [Instrument] = AudioDatasets.defaultInstruments
        public var velocities: [Int] = [70, 110]
        public var seconds: Double = 1.0                     // clip length
        public var noteSeconds: Double = 0.75                // key held; the release rings on
        public var sampleRate = 16_000
        public var soundfont = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
        public init() {}
    }

    /// Renders every (instrument, pitch, velocity) note to `out/<midi pitch>/<instrument>-v<velocity>.wav`,
    /// each peak-normalised to 0.9. One fluidsynth run per instrument plays all its notes in a row
    /// (2 s apart), and the clips are cut from that render. Returns the number of files written.
    /// Where `builtin:notes` lives: $XDG_CACHE_HOME/diffuse/notes (else ~/.cache/diffuse/notes).
    public static var notesCache: URL { UserCache.folder("notes") }

    @discardableResult
    public static func renderNotes(to out: URL, options o: NotesOptions = NotesOptions(),
                                   progress: (Int, Int) -> Void = { _, _ in }) throws -> Int {
        guard FileManager.default.fileExists(atPath: o.soundfont) else {
            throw MediaError.cannotOpen(file: o.soundfont, reason: "no General-MIDI soundfont (Debian: fluid-soundfont-gm)")
        }
        let tool = try findTool("fluidsynth", package: "fluidsynth")
        let fm = FileManager.default
        let tmp = fm.temporaryDirectory.appendingPathComponent("diffuse-notes-\(getpid())")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: tmp) }
        let slot = 2.0
        var written = 0
        for (k, inst) in o.instruments.enumerated() {
            progress(k, o.instruments.count)
            let notes = o.pitches.flatMap { p in o.velocities.map { (p, $0) } }
            let targets = notes.map { out.appendingPathComponent("\($0.0)/\(inst.name)-v\($0.1).wav") }
            if targets.allSatisfy({ fm.fileExists(atPath: $0.path) }) { continue }
            let mid = tmp.appendingPathComponent("\(inst.name).mid"), wav = tmp.appendingPathComponent("\(inst.name).wav")
            try MIDIFile.notes(program: inst.program, notes: notes, slotSeconds: slot, holdSeconds: o.noteSeconds).write(to: mid)
            try run(tool, ["-n", "-i", "-q", "-C", "0", "-R", "0", "-g", "0.6", "-r", String(o.sampleRate),
                           "-F", wav.path, o.soundfont, mid.path])
            var clip = try AudioCodec.read(wav).mono()
            if clip.sampleRate != o.sampleRate { clip = clip.resampled(to: o.sampleRate) }
            let n = Int((o.seconds * Double(o.sampleRate)).rounded())
            for (j, target) in targets.enumerated() where !fm.fileExists(atPath: target.path) {
                let start = Int((Double(j) * slot * Double(o.sampleRate)).rounded())
                let piece = Tensor.zeros([1, n])
                for i in 0..<n where start + i < clip.length { piece.data[i] = clip.samples.data[start + i] }
                guard normalisePeak(piece, to: 0.9) else {
                    throw MediaError.invalidData(file: wav.path, reason: "fluidsynth rendered silence for \(inst.name) pitch \(notes[j].0)")
                }
                try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try AudioCodec.write(AudioClip(samples: piece, sampleRate: o.sampleRate), to: target)
                written += 1
            }
        }
        progress(o.instruments.count, o.instruments.count)
        return written
    }

    public static let digitWords = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

    public struct DigitsOptions: Sendable {
        public var perDigit = 100
        public var voices = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
        public var variants = ["", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5"]
        public var pitch = 25...75
        public var wordsPerMinute = 120...200
        public var seconds = 1.0
        public var sampleRate = 16_000
        public var seed: UInt64 = 0
        public init() {}
    }

    /// Speaks zero..nine `perDigit` times each with voices, variants, pitches and speeds drawn from
    /// a seeded stream, to `out/<digit word>/<index>-<voice><variant>-p<pitch>-s<speed>.wav`: the
    /// speech trimmed of silence, centred in a `seconds` clip and peak-normalised to 0.9.
    @discardableResult
    public static func renderDigits(to out: URL, options o: DigitsOptions = DigitsOptions(),
                                    progress: (Int, Int) -> Void = { _, _ in }) throws -> Int {
        let tool = try findTool("espeak-ng", package: "espeak-ng")
        let fm = FileManager.default
        let tmp = fm.temporaryDirectory.appendingPathComponent("diffuse-digits-\(getpid())")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: tmp) }
        var rng = RandomGenerator(seed: o.seed)
        let total = digitWords.count * o.perDigit
        // One draw of 4 integers per clip, so a clip's settings depend only on (seed, its index).
        let v = rng.integers(total, below: o.voices.count), va = rng.integers(total, below: o.variants.count)
        let p = rng.integers(total, below: o.pitch.count), s = rng.integers(total, below: o.wordsPerMinute.count)
        let n = Int((o.seconds * Double(o.sampleRate)).rounded())
        var written = 0
        for (d, word) in digitWords.enumerated() {
            for k in 0..<o.perDigit {
                let i = d * o.perDigit + k
                if i % 20 == 0 { progress(i, total) }
                let voice = o.voices[v[i]] + o.variants[va[i]]
                let pitch = o.pitch.lowerBound + p[i], speed = o.wordsPerMinute.lowerBound + s[i]
                let target = out.appendingPathComponent("\(word)/\(String(format: "%04d", k))-\(voice)-p\(pitch)-s\(speed).wav")
                if fm.fileExists(atPath: target.path) { continue }
                let wav = tmp.appendingPathComponent("say.wav")
                try run(tool, ["-v", voice, "-p", String(pitch), "-s", String(speed), "-w", wav.path, word])
                var clip = try AudioCodec.read(wav).mono()
                if clip.sampleRate != o.sampleRate { clip = clip.resampled(to: o.sampleRate) }
                let speech = trimSilence(clip.samples, threshold: 0.01)
                let piece = Tensor.zeros([1, n])
                let len = Swift.min(speech.count, n), at = (n - len) / 2, from = (speech.count - len) / 2
                for j in 0..<len { piece.data[at + j] = speech[from + j] }
                guard normalisePeak(piece, to: 0.9) else {
                    throw MediaError.invalidData(file: wav.path, reason: "espeak-ng spoke silence for \(voice) \"\(word)\"")
                }
                try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try AudioCodec.write(AudioClip(samples: piece, sampleRate: o.sampleRate), to: target)
                written += 1
            }
        }
        progress(total, total)
        return written
    }

    // MARK: helpers

    /// Scales x so its largest magnitude is `peak`; false for a silent clip.
    static func normalisePeak(_ x: Tensor, to peak: Float) -> Bool {
        var m: Float = 0
        for i in 0..<x.count { m = Swift.max(m, abs(x.data[i])) }
        guard m > 1e-4 else { return false }
        let s = peak / m
        for i in 0..<x.count { x.data[i] *= s }
        return true
    }

    /// The samples of a mono clip [1, L] from the first to the last one above `threshold` × peak.
    static func trimSilence(_ x: Tensor, threshold: Float) -> [Float] {
        let a = x.scalars
        let peak = a.map { abs($0) }.max() ?? 0
        guard peak > 0, let first = a.firstIndex(where: { abs($0) > threshold * peak }),
              let last = a.lastIndex(where: { abs($0) > threshold * peak }) else { return [] }
        return Array(a[first...last])
    }

    static func findTool(_ name: String, package: String) throws -> URL {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let u = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: u.path) { return u }
        }
        throw MediaError.cannotOpen(file: name, reason: "not found on PATH (Debian package: \(package); scripts/install-deps installs it)")
    }

    static func run(_ tool: URL, _ args: [String]) throws {
        let p = Process()
        p.executableURL = tool
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let msg = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw MediaError.invalidData(file: tool.path, reason: "exit \(p.terminationStatus): \(String(decoding: msg, as: UTF8.self).prefix(300))")
        }
    }
}

/// A minimal Standard MIDI File (format 0, one track) playing notes one after another.
struct MIDIFile {
    var bytes: [UInt8]

    /// Program change on channel 0, then each (pitch, velocity) at `slotSeconds` intervals, held
    /// for `holdSeconds`. 120 bpm, 480 ticks per quarter: 960 ticks per second.
    static func notes(program: Int, notes: [(Int, Int)], slotSeconds: Double, holdSeconds: Double) -> MIDIFile {
        precondition((0..<128).contains(program), "MIDI program \(program)")
        let tps = 960.0
        var track: [UInt8] = []
        func vlq(_ v: Int) {
            var stack = [UInt8(v & 0x7f)], x = v >> 7
            while x > 0 { stack.append(UInt8(x & 0x7f) | 0x80); x >>= 7 }
            track += stack.reversed()
        }
        track += [0x00, 0xC0, UInt8(program)]
        let hold = Int((holdSeconds * tps).rounded()), slot = Int((slotSeconds * tps).rounded())
        var gap = 0
        for (pitch, vel) in notes {
            precondition((0..<128).contains(pitch) && (1..<128).contains(vel), "MIDI note \(pitch) velocity \(vel)")
            vlq(gap); track += [0x90, UInt8(pitch), UInt8(vel)]
            vlq(hold); track += [0x80, UInt8(pitch), 0x40]
            gap = slot - hold
        }
        vlq(slot); track += [0xFF, 0x2F, 0x00]  // end of track after the last release
        func be32(_ v: Int) -> [UInt8] { [24, 16, 8, 0].map { UInt8((v >> $0) & 0xff) } }
        let header: [UInt8] = Array("MThd".utf8) + be32(6) + [0, 0, 0, 1, 0x01, 0xE0]
        return MIDIFile(bytes: header + Array("MTrk".utf8) + be32(track.count) + track)
    }

    func write(to url: URL) throws { try Data(bytes).write(to: url) }
}
