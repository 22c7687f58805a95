import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Image

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a diffusion model.",
        subcommands: [TrainImage.self]
    )
}

struct TrainImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Train a class-conditional image model (UNet2DModel) into a run folder.",
        discussion: """
        RUN receives recipe.json, checkpoints/ (resumable), model/ (a diffusers pipeline folder with \
        the EMA weights, usable with `diffuse generate image --model RUN/model`), previews/, \
        loss.csv and loss.png. Without --config the Fashion-MNIST recipe is used.
        """
    )

    @Option(help: "Training data: builtin:fashion-mnist, or a folder DIR/<class>/*.png (flat: unconditional).") var data: String
    @Option(help: "Run folder.") var out: String
    @Option(help: "Recipe JSON (model, scheduler, training, label_dropout, preview_every).") var config: String?
    @Option(help: "Training steps (overrides the recipe).") var steps: Int?
    @Option(help: "Batch size (overrides the recipe).") var batch: Int?
    @Option(help: "Learning rate (overrides the recipe).") var lr: Float?
    @Flag(help: "Mirror training images left-right at random (overrides the recipe).") var randomFlip = false
    @Flag(help: "Continue from the run folder's last checkpoint (a finished run goes on to a larger --steps).") var resume = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let lr, !(lr > 0 && lr < 1) { throw ValidationError("--lr must be in (0, 1)") }
        if data.hasPrefix("builtin:") && data != "builtin:fashion-mnist" {
            throw ValidationError("--data: the built-in image set is builtin:fashion-mnist")
        }
    }

    func run() throws {
        runtime.apply()
        var recipe = ImageRecipe.fashionMNIST()
        if let config {
            let url = URL(fileURLWithPath: config)
            do { recipe = try JSONDecoder().decode(ImageRecipe.self, from: Data(contentsOf: url)) } catch {
                throw TrainingRunError(path: url.path, reason: "not a valid recipe: \(error)")
            }
        }
        if let steps { recipe.training.steps = steps }
        if let batch { recipe.training.batchSize = batch }
        if let lr { recipe.training.learningRate = lr }
        if randomFlip { recipe.randomFlip = true }
        let side = recipe.model.sampleSize?[0] ?? 32
        let dataset: ImageDataset = data == "builtin:fashion-mnist"
            ? try FashionMNIST(train: true, size: side)
            : try ImageFolder(URL(fileURLWithPath: data), channels: config == nil ? nil : recipe.model.inChannels, size: side)
        if config == nil {
            // The default recipe follows the data: its classes (+ the null label) or none, gray or RGB.
            recipe.model.numClassEmbeds = dataset.classNames.isEmpty ? nil : dataset.classNames.count + 1
            recipe.model.inChannels = dataset.channels
            recipe.model.outChannels = dataset.channels
        }
        let progress = Progress(total: recipe.training.steps, label: "train")
        var lossAvg: Float = 0
        let outURL = URL(fileURLWithPath: out)
        _ = try ImageTraining.run(recipe: recipe, data: dataset, out: outURL, resume: resume) { r in
            lossAvg = lossAvg == 0 ? r.loss : 0.98 * lossAvg + 0.02 * r.loss
            progress.update(r.step, status: String(format: "loss %.4f", lossAvg))
            return true
        }
        print("model: \(outURL.appendingPathComponent("model").path)")
        print("loss curve: \(outURL.appendingPathComponent("loss.png").path)")
    }
}
