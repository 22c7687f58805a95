import Foundation
import Tensor
import NN
import Diffusion
import Image
import Audio
import Video

/// A denoiser loaded from a model folder, pipeline folder or config.json, whichever class its
/// config names in `_class_name` (UNet2DModel when it names none).
enum LoadedModel {
    case image(UNet2DModel)
    case audio(UNet1DModel)
    case video(VideoUNetModel)

    static func load(_ url: URL) throws -> LoadedModel {
        switch try ModelFolder.className(of: url) {
        case UNet1DConfig.className?: return .audio(try UNet1DModel.load(url))
        case VideoUNetConfig.className?: return .video(try VideoUNetModel.load(url))
        case nil, UNet2DConfig.className?: return .image(try UNet2DModel.load(url))
        case let other?:
            throw ModelFolderError(path: url.path, reason: "model class \(other) is not supported (UNet2DModel, UNet1DModel or VideoUNetModel)")
        }
    }

    var model: any DiffusionModel {
        switch self {
        case .image(let m): return m
        case .audio(let m): return m
        case .video(let m): return m
        }
    }

    var inChannels: Int {
        switch self {
        case .image(let m): return m.config.inChannels
        case .audio(let m): return m.config.inChannels
        case .video(let m): return m.config.spatial.inChannels
        }
    }

    var isClassConditional: Bool {
        switch self {
        case .image(let m): return m.config.isClassConditional
        case .audio(let m): return m.config.isClassConditional
        case .video(let m): return m.config.isClassConditional
        }
    }

    /// Label count for drawing random labels: the class embeddings, or 10 for UNet2D's
    /// timestep-embedded classes (any label works there).
    var labelRange: Int {
        switch self {
        case .image(let m): return m.config.numClassEmbeds ?? 10
        case .audio(let m): return m.config.numClassEmbeds ?? 1
        case .video(let m): return m.config.spatial.numClassEmbeds ?? 10
        }
    }

    /// The shape of a batch at the config's sample size: [N, C, H, W], [N, C, L] or [N, C, F, H, W].
    func sampleShape(batch: Int) -> [Int] {
        switch self {
        case .image(let m):
            let s = m.config.sampleSize ?? [32, 32]
            return [batch, m.config.inChannels, s[0], s[1]]
        case .audio(let m):
            let l = m.config.sampleSize ?? 65536
            let k = m.config.lengthMultiple
            return [batch, m.config.inChannels, Swift.max(m.config.minimumLength, l / k * k)]
        case .video(let m):
            let s = m.config.frameSize
            return [batch, m.config.spatial.inChannels, m.config.numFrames, s[0], s[1]]
        }
    }

    /// Why a sample of `shape` does not fit the model, or nil when it does.
    func problem(with shape: [Int]) -> String? {
        switch self {
        case .image(let m):
            let c = m.config
            guard shape.count == 4, shape[1] == c.inChannels, shape[0] >= 1 else {
                return "has shape \(shape); the model takes [N, \(c.inChannels), H, W]"
            }
            let down = 1 << (c.blockOutChannels.count - 1)
            guard shape[2] % down == 0, shape[3] % down == 0 else {
                return "is \(shape[2])×\(shape[3]); the model needs multiples of \(down)"
            }
        case .audio(let m):
            let c = m.config
            guard shape.count == 3, shape[1] == c.inChannels, shape[0] >= 1 else {
                return "has shape \(shape); the model takes [N, \(c.inChannels), L]"
            }
            guard shape[2] % c.lengthMultiple == 0, shape[2] >= c.minimumLength else {
                return "has length \(shape[2]); the model needs a multiple of \(c.lengthMultiple), at least \(c.minimumLength)"
            }
        case .video(let m):
            let c = m.config.spatial
            guard shape.count == 5, shape[1] == c.inChannels, shape[0] >= 1, shape[2] >= 1 else {
                return "has shape \(shape); the model takes [N, \(c.inChannels), F, H, W]"
            }
            let down = 1 << (c.blockOutChannels.count - 1)
            guard shape[3] % down == 0, shape[4] % down == 0 else {
                return "has frames of \(shape[3])×\(shape[4]); the model needs multiples of \(down)"
            }
        }
        return nil
    }
}
