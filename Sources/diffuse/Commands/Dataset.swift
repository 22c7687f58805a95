import ArgumentParser
import Foundation
import Audio
import Image
import Tensor
import Video

struct Dataset: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a labelled training set from tools on this machine.",
        subcommands: [DatasetNotes.self, DatasetDigits.self, DatasetFashionMNIST.self, DatasetMovingFashion.self, DatasetEmoji.self]
    )
}

struct DatasetNotes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notes",
        abstract: "Pitched instrument notes rendered with fluidsynth and the General-MIDI soundfont.",
        discussion: """
        Writes OUT/<midi pitch>/<instrument>-v<velocity>.wav (16 kHz mono, 1 s, peak 0.9): every \
        instrument × pitch × velocity. 60 is middle C. Re-running keeps the files already made.
        Instruments: \(AudioDatasets.defaultInstruments.map { "\($0.name) (\($0.program))" }.joined(separator: ", ")).
        """
    )

    @Option(help: "Output folder.") var out: String
    @Option(help: "MIDI pitch range, e.g. 48-72.") var pitches = "48-72"
    @Option(help: "Comma-separated instrument names from the list below, or General-MIDI program numbers (0-127).")
    var instruments: String?
    @Option(help: "Comma-separated key velocities (1-127).") var velocities = "70,110"
    @Option(help: "Clip length in seconds.") var seconds = 1.0
    @Option(help: "Sample rate in Hz.") var rate = 16_000
    @Option(help: "SoundFont (.sf2).") var soundfont = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

    func options() throws -> AudioDatasets.NotesOptions {
        var o = AudioDatasets.NotesOptions()
        let parts = pitches.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 2 || parts.count == 1, let lo = parts.first, let hi = parts.last, lo <= hi, lo >= 0, hi <= 127 else {
            throw ValidationError("--pitches: give LOW-HIGH MIDI numbers within 0-127, e.g. 48-72")
        }
        o.pitches = lo...hi
        if let instruments {
            o.instruments = try instruments.split(separator: ",").map { s in
                if let i = AudioDatasets.defaultInstruments.first(where: { $0.name == s.lowercased() }) { return i }
                if let p = Int(s), (0..<128).contains(p) { return .init("program\(p)", p) }
                throw ValidationError("--instruments: \(s) is neither a known instrument nor a program 0-127")
            }
        }
        o.velocities = try velocities.split(separator: ",").map {
            guard let v = Int($0), (1..<128).contains(v) else { throw ValidationError("--velocities: \($0) is not within 1-127") }
            return v
        }
        guard seconds > 0.05 && seconds <= 10 else { throw ValidationError("--seconds must be in (0.05, 10]") }
        guard (8000...96_000).contains(rate) else { throw ValidationError("--rate must be within 8000-96000") }
        o.seconds = seconds
        o.sampleRate = rate
        o.soundfont = soundfont
        return o
    }

    func validate() throws { _ = try options() }

    func run() throws {
        let o = try options()
        let progress = Progress(total: o.instruments.count, label: "render")
        let n = try AudioDatasets.renderNotes(to: URL(fileURLWithPath: out), options: o) { done, _ in progress.update(done) }
        print("\(n) new notes in \(out) (\(o.pitches.count) pitches × \(o.instruments.count) instruments × \(o.velocities.count) velocities)")
    }
}

struct DatasetDigits: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "digits",
        abstract: "The words zero..nine spoken by espeak-ng across voices, pitches and speeds (an SC09-like set).",
        discussion: """
        Writes OUT/<word>/<n>-<voice>-p<pitch>-s<speed>.wav (16 kHz mono, 1 s, speech centred, peak \
        0.9). The voice settings come from --seed; re-running keeps the files already made.
        """
    )

    @Option(help: "Output folder.") var out: String
    @Option(help: "Clips per digit.") var perDigit = 100
    @Option(help: "Seed for the voice settings.") var seed: UInt64 = 0
    @Option(help: "Sample rate in Hz.") var rate = 16_000

    func validate() throws {
        if perDigit < 1 || perDigit > 100_000 { throw ValidationError("--per-digit must be between 1 and 100000") }
        guard (8000...96_000).contains(rate) else { throw ValidationError("--rate must be within 8000-96000") }
    }

    func run() throws {
        var o = AudioDatasets.DigitsOptions()
        o.perDigit = perDigit
        o.seed = seed
        o.sampleRate = rate
        let progress = Progress(total: 10 * perDigit, label: "speak")
        let n = try AudioDatasets.renderDigits(to: URL(fileURLWithPath: out), options: o) { done, _ in progress.update(done) }
        print("\(n) new clips in \(out)")
    }
}

struct DatasetMovingFashion: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moving-fashion",
        abstract: "Moving-MNIST-style clips: Fashion-MNIST items moving and bouncing on a black canvas.",
        discussion: """
        Writes OUT/<class>/<n>.mp4 (H.264 yuv420p, gray): in each clip one or two items of one \
        class (the label) glide in straight lines and bounce off the edges. Items are 14 pixels on \
        canvases below 56, else 28 (Fashion-MNIST's own size). Every clip depends only on --seed, \
        its class and its number; re-running keeps the files already made. Items come from \
        Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
        """
    )

    @Option(help: "Output folder.") var out: String
    @Option(help: "Clips per class.") var perClass = 1000
    @Option(help: "Canvas side in pixels (32 or 64 are usual).") var size = 32
    @Option(help: "Frames per clip.") var frames = 16
    @Option(help: "Frame rate written into the files.") var fps = 8.0
    @Option(help: "At most this many items per clip (1...8).") var items = 2
    @Option(help: "Item side in pixels (default 14 below a 56-pixel canvas, else 28).") var itemSize: Int?
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Flag(help: "Take items from the Fashion-MNIST test split (for a held-out set).") var testSplit = false

    func options() throws -> MovingFashion.Options {
        var o = MovingFashion.Options()
        o.size = size; o.frames = frames; o.fps = fps; o.maxItems = items; o.itemSize = itemSize; o.seed = seed
        do { try o.validate() } catch let e as MediaError { throw ValidationError(e.reason) }
        return o
    }

    func validate() throws {
        if perClass < 1 || perClass > 1_000_000 { throw ValidationError("--per-class must be between 1 and 1000000") }
        _ = try options()
    }

    func run() throws {
        let o = try options()
        let source = try FashionMNIST(train: !testSplit, size: 28)
        // 2,000 items per class on average: variety enough, and little memory at 28 pixels.
        let items = try MovingFashion.ItemImages(fashion: source, side: o.item, limit: 20_000)
        let progress = Progress(total: 10 * perClass, label: "render")
        let n = try MovingFashion.write(to: URL(fileURLWithPath: out), perClass: perClass, options: o, items: items) { done, _ in
            progress.update(done)
        }
        print("\(n) new clips in \(out) (\(perClass) per class, \(o.frames) frames of \(o.size)×\(o.size) at \(String(format: "%g", o.fps)) fps)")
    }
}

struct DatasetFashionMNIST: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fashion-mnist",
        abstract: "Fashion-MNIST as PNG class folders (from Debian's dataset-fashion-mnist).",
        discussion: """
        Writes OUT/<class>/<index>.png: 8-bit gray 32×32 images, the 28×28 picture centred on black — \
        the pixels builtin:fashion-mnist feeds a model. <index> is the image's position in its split. \
        --per-class 10 makes a small real set; --offset skips the first images of each class, so \
        another --offset gives a disjoint set. Classes: \(FashionMNIST.names.joined(separator: ", ")).
        """
    )

    enum Split: String, ExpressibleByArgument, CaseIterable { case train, test }

    @Option(help: "Output folder.") var out: String
    @Option(help: "Images per class (default: all; 6000 per class in train, 1000 in test).") var perClass: Int?
    @Option(help: "Which split.") var split: Split = .train
    @Option(help: "Skip the first K images of each class.") var offset = 0

    func validate() throws {
        if let perClass, perClass < 1 { throw ValidationError("--per-class must be at least 1") }
        if offset < 0 { throw ValidationError("--offset must be at least 0") }
    }

    func run() throws {
        let data = try FashionMNIST(train: split == .train)
        var progress: Progress? = nil
        let n = try data.export(to: URL(fileURLWithPath: out), perClass: perClass, offset: offset) { done, total in
            if progress == nil { progress = Progress(total: total, label: "write") }
            progress?.update(done)
        }
        print("\(n) images in \(out) (\(split.rawValue) split, \(FashionMNIST.names.count) classes)")
    }
}

struct DatasetEmoji: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emoji",
        abstract: "Captioned colour emoji (Noto Color Emoji + Unicode's CLDR names) as a text-to-image folder.",
        discussion: """
        Every fully-qualified emoji of emoji-test.txt (Debian unicode-data) that the font (Debian \
        fonts-noto-color-emoji) draws as one colour bitmap, composited on white, padded to a square \
        and area-resized to --size, captioned with its CLDR name ("red apple", "woman firefighter: \
        medium skin tone"). Writes the Hugging Face imagefolder layout:
          OUT/<code points>.png            e.g. 1f34e.png, 1f469-1f3fd-200d-1f692.png
          OUT/metadata.jsonl               {"file_name", "text", "group", "subgroup", "codepoints"}
          OUT/holdout/<code points>.png    held-out names, never trained on
          OUT/holdout/metadata.jsonl       their lines; OUT/holdout.jsonl: the same, names relative to OUT
        Held-out rule: an emoji is held out when a hash of its name (64-bit FNV-1a of the UTF-8 \
        name, then SplitMix64's finaliser) falls in the lowest --holdout-fraction of its range, \
        except the first emoji of each subgroup, always trained on. The rule depends on the name \
        alone, so a name is held out or not whatever --size or --limit.
        Deterministic (same bytes every run); OUT is written under a temporary name and renamed into \
        place. Emoji the font cannot draw are skipped and counted by reason.
        """
    )

    @Option(help: "Output folder (new, empty, or one this command made: it is replaced).") var out: String
    @Option(help: "Image side in pixels.") var size = 64
    @Option(help: "Fraction of the names held out (see the rule below).") var holdoutFraction = 0.1
    @Option(help: "Only the first N fully-qualified emoji of emoji-test.txt (small sets for tests).") var limit: Int?
    @Option(help: "Also write a grid of 64 training emoji spread over the set as this PNG.") var preview: String?
    @Option(help: "The CBDT colour font.") var font = EmojiDataset.defaultFont.path
    @Option(help: "Unicode's emoji-test.txt.") var emojiTest = EmojiDataset.defaultEmojiTest.path

    func options() -> EmojiDataset.Options {
        var o = EmojiDataset.Options()
        o.size = size
        o.holdoutFraction = holdoutFraction
        o.limit = limit
        o.font = URL(fileURLWithPath: font)
        o.emojiTest = URL(fileURLWithPath: emojiTest)
        return o
    }

    func validate() throws {
        do { try options().validate() } catch let e as MediaError { throw ValidationError("\(e.file): \(e.reason)") }
    }

    func run() throws {
        let start = Date()
        let outURL = URL(fileURLWithPath: out)
        let (summary, images) = try EmojiDataset.write(to: outURL, options: options())
        let seconds = Date().timeIntervalSince(start)
        print("\(summary.written + summary.heldOut) emoji of \(size)×\(size) in \(out) in \(String(format: "%.1f", seconds)) s: "
              + "\(summary.written) for training (metadata.jsonl), \(summary.heldOut) held out (holdout/, holdout.jsonl), "
              + "\(summary.skipped.count) skipped")
        for (reason, count) in summary.skippedByReason {
            let examples = summary.skipped.filter { EmojiDataset.reasonKind($0.reason) == reason }.prefix(3)
                .map { "\($0.entry.name) [\($0.entry.codePointsText)]" }
            print("  skipped \(count): \(reason) (e.g. \(examples.joined(separator: "; ")))")
        }
        if let preview, !images.isEmpty {
            let n = Swift.min(64, images.count)
            let batch = Tensor.zeros([n, 3, size, size])
            for k in 0..<n {
                let t = images[k * images.count / n].tensor()
                (batch.data + k * 3 * size * size).update(from: t.data, count: 3 * size * size)
            }
            try ImageGrid.write(batch, columns: 8, padValue: 1, to: URL(fileURLWithPath: preview))
            print("preview: \(preview)")
        }
    }
}
