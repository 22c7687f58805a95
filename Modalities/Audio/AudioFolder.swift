import Foundation
import Tensor

/// Audio clips in a folder: `DIR/<class>/*.wav|flac|ogg|aiff|mp3` (class names sorted → labels),
/// or the files directly in DIR (unconditional). Each clip is mixed to mono, resampled to
/// `sampleRate` and cut to `length` samples from its start (zero-padded when shorter). Clips are
/// decoded when a batch first needs them and kept (as Float32) while they fit in `cacheBytes`;
/// an unreadable file is skipped with a warning and counted (it reads as silence), never fatal.
public final class AudioFolder {
    public static let extensions: Set<String> = ["wav", "flac", "ogg", "oga", "aif", "aiff", "mp3"]

    public let root: URL
    public let files: [(url: URL, label: Int)]
    public let classNames: [String]
    public let sampleRate: Int
    public let length: Int
    public var channels: Int { 1 }
    public private(set) var skipped = Set<String>()
    public var warn: (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }
    private var cache: [Int: [Float]] = [:]
    private let cacheLimit: Int

    public init(_ root: URL, sampleRate: Int, length: Int, cacheBytes: Int = 1 << 30) throws {
        precondition(sampleRate > 0 && length > 0, "AudioFolder: rate \(sampleRate), length \(length)")
        let folder = try ClassFolder(root, extensions: Self.extensions)
        self.root = root
        files = folder.files
        classNames = folder.classNames
        self.sampleRate = sampleRate
        self.length = length
        cacheLimit = cacheBytes / (4 * length)
    }

    public var count: Int { files.count }
    public func label(_ i: Int) -> Int { files[i].label }

    /// Clip i as `length` mono samples at `sampleRate`.
    public func clip(_ i: Int) -> [Float] {
        if let c = cache[i] { return c }
        var out = [Float](repeating: 0, count: length)
        let url = files[i].url
        do {
            let clip = try AudioCodec.read(url, limits: .init(maxSeconds: Double(length) / Double(sampleRate) + 1)).mono()
                .window(rate: sampleRate, length: length)
            let n = Swift.min(length, clip.length)
            for j in 0..<n { out[j] = clip.samples.data[j] }
        } catch {
            if !skipped.contains(url.path) { skipped.insert(url.path); warn("skipping \(error)") }
        }
        if cache.count < cacheLimit { cache[i] = out }
        return out
    }

    /// A batch x [N, 1, length] and its labels.
    public func batch(_ indices: [Int]) -> (Tensor, [Int]) {
        let x = Tensor.zeros([indices.count, 1, length])
        for (k, i) in indices.enumerated() {
            clip(i).withUnsafeBufferPointer { (x.data + k * length).update(from: $0.baseAddress!, count: length) }
        }
        return (x, indices.map { files[$0].label })
    }
}
