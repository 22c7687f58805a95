import Foundation
import Tensor
import NN
import Diffusion
import Text
import Media
import Workflow
import Image
import Audio
import Video

// One executable, one libFuzzer target per parser: `diffuse-fuzz TARGET [libFuzzer args]`.
// Every target feeds the input to a parser the way a user's file reaches it; a thrown error is
// the expected outcome for garbage, a trap or an unbounded allocation is a bug. Budgets are set
// low so that a model a config describes is weighed, and built only when it is small.

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// Where file-based parsers read their input (libpng, libsndfile and FFmpeg take paths).
nonisolated(unsafe) var scratch = URL(fileURLWithPath: NSTemporaryDirectory())
nonisolated(unsafe) var target = ""

func withFile(_ data: Data, ext: String, _ body: (URL) throws -> Void) {
    let url = scratch.appendingPathComponent("input.\(ext)")
    try? data.write(to: url)
    _ = try? body(url)
}

/// Decodes a config of each kind; a config that decodes is weighed and, when small, built.
func fuzzConfig(_ data: Data) {
    let d = JSONDecoder()
    if let c = try? d.decode(UNet2DConfig.self, from: data) {
        _ = try? NNInit.budgeted("fuzz", bytesPerParameter: 4) { try UNet2DModel(config: c) }
    }
    if let c = try? d.decode(UNet1DConfig.self, from: data) {
        _ = try? NNInit.budgeted("fuzz", bytesPerParameter: 4) { try UNet1DModel(config: c) }
    }
    if let c = try? d.decode(VideoUNetConfig.self, from: data) {
        _ = try? NNInit.budgeted("fuzz", bytesPerParameter: 4) { try VideoUNetModel(config: c) }
    }
    if let c = try? d.decode(UNet2DConditionConfig.self, from: data) {
        _ = try? NNInit.budgeted("fuzz", bytesPerParameter: 4) { try UNet2DConditionModel(config: c) }
    }
    if let c = try? d.decode(AutoencoderKLConfig.self, from: data) {
        _ = try? NNInit.budgeted("fuzz", bytesPerParameter: 4) { try AutoencoderKL(config: c) }
    }
    if let c = try? d.decode(CLIPTextConfig.self, from: data) {
        _ = try? NNInit.budgeted("fuzz", bytesPerParameter: 4) { try CLIPTextModel(config: c) }
    }
    if let s = try? d.decode(SchedulerConfig.self, from: data) { _ = try? s.noiseSchedule() }
}

let callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32 = { bytes, size in
    let data = bytes.map { Data(bytes: $0, count: size) } ?? Data()
    switch target {
    case "png": withFile(data, ext: "png") { _ = try PNGCodec.read($0) }
    case "wav": withFile(data, ext: "wav") { _ = try AudioCodec.read($0) }
    // Limits far below the defaults (2 GB of decoded frames), and a prefix of 64 frames: the
    // demuxers and decoders are what is fuzzed, and the frame loop is the same for every frame.
    case "mp4": withFile(data, ext: "mp4") { _ = try VideoCodec.read($0, maxFrames: 64, limits: .init(maxDimension: 4096, maxFrames: 1000, maxBytes: 64 << 20)) }
    case "safetensors":
        withFile(data, ext: "safetensors") { url in
            let f = try SafeTensorsFile(url: url)
            for n in f.names { _ = try? f.tensor(n); _ = try? f.weight(n) }
        }
    case "checkpoint": withFile(data, ext: "safetensors") { _ = try StableDiffusionCheckpoint.open($0) }
    case "config": fuzzConfig(data)
    case "tokenizer":
        if let t = tokenizer { _ = t(String(decoding: data, as: UTF8.self)) }
    case "manifest": withFile(data, ext: "jsonl") { _ = try AugmentationManifest.read($0) }
    default: fatalError("unknown target \(target)")
    }
    BufferPool.drain()
    return 0
}

nonisolated(unsafe) var tokenizer: CLIPTokenizer? = nil

@main
struct FuzzMain {
    static func main() {
        var args = CommandLine.arguments
        let targets = ["png", "wav", "mp4", "safetensors", "checkpoint", "config", "tokenizer", "manifest"]
        guard args.count >= 2, targets.contains(args[1]) else {
            FileHandle.standardError.write(Data("usage: diffuse-fuzz \(targets.joined(separator: "|")) [libFuzzer flags] [corpus...]\n".utf8))
            exit(64)
        }
        target = args.remove(at: 1)
        scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("diffuse-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        MemoryBudget.set(64 << 20)
        // The budget also bounds the pool of freed tensor buffers (a quarter of it: 16 MB), which
        // kept 2 GB whatever the budget before — the mp4 target, decoding inputs of ever new
        // sizes, outgrew libFuzzer's RSS limit with no leak (heaptrack: the pool's buffers; issue
        // 21). Each input also drains the pool (the callback).
        Threads.count = 1
        if target == "tokenizer" { tokenizer = try? CLIPTokenizer.builtin() }
        var argc = Int32(args.count)
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        let rc = cargs.withUnsafeMutableBufferPointer { buf -> Int32 in
            var argv = buf.baseAddress
            return LLVMFuzzerRunDriver(&argc, &argv, callback)
        }
        try? FileManager.default.removeItem(at: scratch)
        exit(rc)
    }
}
