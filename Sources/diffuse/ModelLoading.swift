import Foundation
import Tensor
import NN
import Diffusion
import Image
import Audio
import Video

/// Every model class the command line loads, by the `_class_name` of its config.json. The one
/// place that lists the modalities' models: commands ask the folder what it holds and go on
/// with the `FolderModel` it names.
enum Models {
    static let classes: [any FolderModel.Type] = [UNet2DModel.self, UNet1DModel.self, VideoUNetModel.self]

    /// The model at `url` (model folder, pipeline folder or config.json), whichever class its
    /// config names (UNet2DModel when it names none).
    static func load(_ url: URL) throws -> any FolderModel {
        let name = try ModelFolder.className(of: url) ?? UNet2DModel.className
        guard let type = classes.first(where: { $0.className == name }) else {
            throw ModelFolderError(path: url.path, reason: "model class \(name) is not supported (\(classes.map { $0.className }.joined(separator: ", ")))")
        }
        return try type.load(url)
    }
}
