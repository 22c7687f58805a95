import ArgumentParser
import Foundation
import Audio

/// Spectrograms of audio files as one PNG, to look at clips side by side.
struct SpectrogramCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spectrogram",
        abstract: "Draw the spectrograms of audio files side by side as one PNG.",
        discussion: """
        Each file is mixed to mono and resampled to --rate; its magnitude spectrogram (Hann \
        window of --frame samples, hop --hop) is drawn in dB, 80 dB below its peak black, low \
        frequencies at the bottom — the same drawing as `generate audio --spectrogram` and the \
        training previews.
        """
    )

    @Argument(help: "Audio files (WAV, FLAC, OGG, ...).") var files: [String]
    @Option(help: "Sample rate the files are drawn at.") var rate = 16_000
    @Option(help: "Window length (a power of two).") var frame = 512
    @Option(help: "Hop between windows.") var hop = 128
    @Option(name: [.long, .customShort("o")], help: "Output PNG.") var out: String
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one audio file") }
        if frame < 16 || frame > 65_536 || frame & (frame - 1) != 0 { throw ValidationError("--frame must be a power of two within 16-65536") }
        if hop < 1 || hop > frame { throw ValidationError("--hop must be within 1 and --frame") }
        if rate < 1000 || rate > 384_000 { throw ValidationError("--rate must be within 1000-384000") }
    }

    func run() throws {
        runtime.apply()
        let clips = try files.map { path -> [Float] in
            var clip = try AudioCodec.read(URL(fileURLWithPath: path)).mono()
            if clip.sampleRate != rate { clip = clip.resampled(to: rate) }
            return clip.samples.scalars
        }
        try Spectrogram.write(clips, to: URL(fileURLWithPath: out), frame: frame, hop: hop)
        print(out)
    }
}
