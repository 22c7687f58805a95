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

/// What every `train <modality>` takes.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Run folder.") var out: String
    @Option(help: "Recipe JSON (model, scheduler, training, label_dropout, preview_every); RUN/recipe.json of another run works.")
    var config: String?
    @Option(help: "Training steps (overrides the recipe).") var steps: Int?
    @Option(help: "Batch size (overrides the recipe).") var batch: Int?
    @Option(help: "Learning rate (overrides the recipe).") var lr: Float?
    @Flag(help: "Continue from the run folder's last checkpoint (a finished run goes on to a larger --steps).") var resume = false

    func validate() throws {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let lr, !(lr > 0 && lr < 1) { throw ValidationError("--lr must be in (0, 1)") }
    }

    /// The recipe in --config (or `fallback`), with the command-line overrides applied.
    func recipe<R: RunRecipe>(_ fallback: R) throws -> R {
        var r = fallback
        if let config {
            let url = URL(fileURLWithPath: config)
            do { r = try JSONDecoder().decode(R.self, from: Data(contentsOf: url)) } catch {
                throw TrainingRunError(path: url.path, reason: "not a valid recipe: \(error)")
            }
        }
        if let steps { r.training.steps = steps }
        if let batch { r.training.batchSize = batch }
        if let lr { r.training.learningRate = lr }
        return r
    }

    /// Drives a run with a progress bar (loss as a moving average) and prints where things went.
    func train(_ body: (@escaping (TrainingStep) -> Bool) throws -> Void, total: Int) throws {
        let progress = Progress(total: total, label: "train")
        var lossAvg: Float = 0
        try body { r in
            lossAvg = lossAvg == 0 ? r.loss : 0.98 * lossAvg + 0.02 * r.loss
            progress.update(r.step, status: String(format: "loss %.4f", lossAvg))
            return true
        }
        let outURL = URL(fileURLWithPath: out)
        print("model: \(outURL.appendingPathComponent("model").path)")
        print("loss curve: \(outURL.appendingPathComponent("loss.png").path)")
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
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if data.hasPrefix("builtin:") && data != "builtin:fashion-mnist" {
            throw ValidationError("--data: the built-in image set is builtin:fashion-mnist")
        }
    }

    func run() throws {
        runtime.apply()
        var recipe = try options.recipe(ImageRecipe.fashionMNIST())
        if randomFlip { recipe.randomFlip = true }
        let side = recipe.model.sampleSize?[0] ?? 32
        let dataset: ImageDataset = data == "builtin:fashion-mnist"
            ? try FashionMNIST(train: true, size: side)
            : try ImageFolder(URL(fileURLWithPath: data), channels: options.config == nil ? nil : recipe.model.inChannels, size: side)
        if options.config == nil {
            // The default recipe follows the data: its classes (+ the null label) or none, gray or RGB.
            recipe.model.numClassEmbeds = dataset.classNames.isEmpty ? nil : dataset.classNames.count + 1
            recipe.model.inChannels = dataset.channels
            recipe.model.outChannels = dataset.channels
        }
        try options.train({ onStep in
            _ = try ImageTraining.run(recipe: recipe, data: dataset, out: URL(fileURLWithPath: options.out), resume: options.resume, onStep: onStep)
        }, total: recipe.training.steps)
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
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if data.hasPrefix("builtin:") && data != "builtin:notes" {
            throw ValidationError("--data: the built-in audio set is builtin:notes")
        }
    }

    func run() throws {
        runtime.apply()
        var dir = URL(fileURLWithPath: data)
        if data == "builtin:notes" {
            let env = ProcessInfo.processInfo.environment
            let cache = env["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
                ?? URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".cache")
            dir = cache.appendingPathComponent("diffuse/notes")
            let made = try AudioDatasets.renderNotes(to: dir)
            if made > 0 { print("rendered \(made) notes into \(dir.path)") }
        }
        let probe = try ClassFolder(dir, extensions: AudioFolder.extensions)
        var recipe = try options.recipe(AudioRecipe.notes(classes: Swift.max(1, probe.classNames.count)))
        if options.config == nil {
            recipe.model.numClassEmbeds = probe.classNames.isEmpty ? nil : probe.classNames.count + 1
        }
        let data = try AudioFolder(dir, sampleRate: recipe.model.sampleRate ?? 16_000, length: recipe.model.sampleSize ?? 16_384)
        try options.train({ onStep in
            _ = try AudioTraining.run(recipe: recipe, data: data, out: URL(fileURLWithPath: options.out), resume: options.resume, onStep: onStep)
        }, total: recipe.training.steps)
        if !data.skipped.isEmpty { print("skipped \(data.skipped.count) unreadable files") }
    }
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
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if data.hasPrefix("builtin:") && data != "builtin:moving-fashion" {
            throw ValidationError("--data: the built-in video set is builtin:moving-fashion")
        }
        if let f = jointImageFraction, !(f >= 0 && f <= 1) { throw ValidationError("--joint-image-fraction must be in [0, 1]") }
    }

    func run() throws {
        runtime.apply()
        var recipe = try options.recipe(VideoRecipe.movingFashion())
        if let f = jointImageFraction { recipe.jointImageFraction = f }
        if let initFrom {
            let url = URL(fileURLWithPath: initFrom)
            recipe.initFrom = url.standardizedFileURL.path
            if options.config == nil {
                // The spatial U-Net is the image model's; the classes follow the data below.
                recipe.model.spatial = try ConfigFile.read(UNet2DConfig.self, from: try ModelFolder.locate(url).config)
            }
        }
        var dir = URL(fileURLWithPath: data)
        if data == "builtin:moving-fashion" {
            var o = MovingFashion.Options()
            o.size = recipe.model.frameSize[0]; o.frames = recipe.model.numFrames; o.fps = recipe.model.frameRate
            let progress = Progress(total: 10 * 1000, label: "render")
            let (folder, made) = try MovingFashion.renderBuiltin(options: o) { done, _ in progress.update(done) }
            dir = folder
            if made > 0 { print("rendered \(made) clips into \(dir.path)") }
        }
        let probe = try ClassFolder(dir, extensions: VideoFolder.extensions)
        if options.config == nil {
            recipe.model.spatial.numClassEmbeds = probe.classNames.isEmpty ? nil : probe.classNames.count + 1
        }
        let folder = try VideoFolder(dir, frames: recipe.model.numFrames, size: recipe.model.frameSize[0],
                                     channels: options.config == nil && initFrom == nil ? nil : recipe.model.spatial.inChannels,
                                     fps: recipe.model.frameRate)
        if options.config == nil && initFrom == nil {
            recipe.model.spatial.inChannels = folder.channels
            recipe.model.spatial.outChannels = folder.channels
        }
        try options.train({ onStep in
            _ = try VideoTraining.run(recipe: recipe, data: folder, out: URL(fileURLWithPath: options.out), resume: options.resume, onStep: onStep)
        }, total: recipe.training.steps)
        if !folder.skipped.isEmpty { print("skipped \(folder.skipped.count) unreadable files") }
    }
}
