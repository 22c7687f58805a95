import ArgumentParser
import Foundation
import Tensor
import NN
import Diffusion
import Image
import Audio
import Video

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a diffusion model.",
        subcommands: [TrainImage.self, TrainAudio.self, TrainVideo.self]
    )
}

/// What every `train <modality>` takes, and the run they share.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Run folder.") var out: String
    @Option(help: "Recipe JSON (model, scheduler, training, label_dropout, preview_every); RUN/recipe.json of another run works.")
    var config: String?
    @Option(help: "Training steps (overrides the recipe).") var steps: Int?
    @Option(help: "Batch size (overrides the recipe).") var batch: Int?
    @Option(help: "Learning rate (overrides the recipe).") var lr: Float?
    @Flag(help: "Continue from the run folder's last checkpoint (a finished run goes on to a larger --steps).") var resume = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let steps, steps < 1 || steps > 10_000_000 { throw ValidationError("--steps must be between 1 and 10000000") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let lr, !(lr > 0 && lr < 1) { throw ValidationError("--lr must be in (0, 1)") }
    }

    /// Checks that `data` names a folder or the modality's built-in set.
    static func check<M: Modality>(data: String, _ type: M.Type) throws {
        if data.hasPrefix("builtin:") && data != M.builtinData {
            throw ValidationError("--data: the built-in \(M.name) set is \(M.builtinData)")
        }
    }

    /// Trains a model of modality `M` on `data`: the recipe of --config (or the modality's
    /// default, fitted to the data's classes and channels), the overrides, then `adjust`; a
    /// progress bar with the loss as a moving average; a summary of where things went.
    func train<M: Modality>(_ type: M.Type, data spec: String, adjust: (inout Recipe<M>) throws -> Void = { _ in }) throws {
        runtime.apply()
        var recipe = try config.map { try Recipe<M>.load(URL(fileURLWithPath: $0)) } ?? M.defaultRecipe(classes: 1)
        if let steps { recipe.training.steps = steps }
        if let batch { recipe.training.batchSize = batch }
        if let lr { recipe.training.learningRate = lr }
        try adjust(&recipe)
        let data = try M.loadData(spec, for: recipe, fitting: config == nil, note: { print($0) })
        if config == nil { recipe = M.fitted(recipe, to: data) }
        let progress = Progress(total: recipe.training.steps, label: "train")
        var lossAvg: Float = 0
        let outURL = URL(fileURLWithPath: out)
        try Training.run(recipe: recipe, data: data, out: outURL, resume: resume) { r in
            lossAvg = lossAvg == 0 ? r.loss : 0.98 * lossAvg + 0.02 * r.loss
            progress.update(r.step, status: String(format: "loss %.4f", lossAvg))
            return true
        }
        print("model: \(outURL.appendingPathComponent("model").path)")
        print("loss curve: \(outURL.appendingPathComponent("loss.png").path)")
        if !data.skipped.isEmpty { print("skipped \(data.skipped.count) unreadable files") }
    }
}

struct TrainImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Train a class-conditional image model (UNet2DModel) into a run folder.",
        discussion: """
        RUN receives recipe.json, checkpoints/ (resumable), model/ (a diffusers pipeline folder with \
        the EMA weights, usable with `diffuse generate image --model RUN/model`), previews/, \
        loss.csv and loss.png. Without --config the Fashion-MNIST recipe is used (the bundled \
        model's), following the data's classes and colour.
        """
    )

    @Option(help: "Training data: builtin:fashion-mnist, or a folder DIR/<class>/*.png (flat: unconditional).") var data: String
    @OptionGroup var options: TrainingOptions
    @Flag(help: "Mirror training images left-right at random (overrides the recipe).") var randomFlip = false

    func validate() throws { try TrainingOptions.check(data: data, ImageModality.self) }

    func run() throws {
        try options.train(ImageModality.self, data: data) { if randomFlip { $0.randomFlip = true } }
    }
}

struct TrainAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "Train a class-conditional waveform model (UNet1DModel) into a run folder.",
        discussion: """
        RUN receives recipe.json, checkpoints/ (resumable), model/ (a pipeline folder with the EMA \
        weights, usable with `diffuse generate audio --model RUN/model`), previews/ (a WAV of one \
        clip per class and its spectrograms), loss.csv and loss.png. Without --config the notes \
        recipe is used (the bundled model's), following the data's classes.
        builtin:notes renders the default notes set (`diffuse dataset notes`) into \
        $XDG_CACHE_HOME/diffuse/notes (~/.cache/diffuse/notes) the first time.
        """
    )

    @Option(help: "Training data: builtin:notes, or a folder DIR/<class>/*.wav|flac|ogg (flat: unconditional).") var data: String
    @OptionGroup var options: TrainingOptions

    func validate() throws { try TrainingOptions.check(data: data, AudioModality.self) }

    func run() throws { try options.train(AudioModality.self, data: data) }
}

struct TrainVideo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "video",
        abstract: "Train a class-conditional video model (VideoUNetModel: a UNet2DModel per frame + temporal attention) into a run folder.",
        discussion: """
        RUN receives recipe.json, checkpoints/ (resumable), model/ (a pipeline folder with the EMA \
        weights, usable with `diffuse generate video --model RUN/model`), previews/ (a GIF of one \
        clip per class), loss.csv and loss.png. Without --config the moving-fashion recipe is used \
        (the bundled model's), following the data's classes and colour. Clips are resampled to the \
        recipe's frame rate, cut to its frame count and resized to its frame size.
        --init-from IMAGE_MODEL starts the spatial layers from an image model (`diffuse train image` \
        RUN/model, or samples/image); without --config the video model then takes that model's \
        U-Net config. The temporal layers start as the identity, so step 0 is the image model on \
        every frame.
        builtin:moving-fashion renders the default moving-fashion set (`diffuse dataset moving-fashion`, \
        1000 clips per class) into $XDG_CACHE_HOME/diffuse/moving-fashion the first time.
        """
    )

    @Option(help: "Training data: builtin:moving-fashion, or a folder DIR/<class>/*.mp4|webm|gif (flat: unconditional).") var data: String
    @OptionGroup var options: TrainingOptions
    @Option(help: "Image model (pipeline or UNet2DModel folder) whose weights start the spatial layers.") var initFrom: String?
    @Option(help: "Fraction of steps trained on single frames as one-frame clips (overrides the recipe).") var jointImageFraction: Float?

    func validate() throws {
        try TrainingOptions.check(data: data, VideoModality.self)
        if let f = jointImageFraction, !(f >= 0 && f <= 1) { throw ValidationError("--joint-image-fraction must be in [0, 1]") }
    }

    func run() throws {
        try options.train(VideoModality.self, data: data) { recipe in
            if let f = jointImageFraction { recipe.jointImageFraction = f }
            if let initFrom {
                let url = URL(fileURLWithPath: initFrom)
                recipe.initFrom = url.standardizedFileURL.path
                if options.config == nil {
                    // The spatial U-Net is the image model's; the classes follow the data.
                    recipe.model.spatial = try ConfigFile.read(UNet2DConfig.self, from: try ModelFolder.locate(url).config)
                }
            }
        }
    }
}
