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
    @Option(help: "Recipe JSON (model, scheduler, training, label_dropout, preview_every, snr_gamma, noise_offset); RUN/recipe.json of another run works.")
    var config: String?
    @Option(help: "Training steps (overrides the recipe).") var steps: Int?
    @Option(help: "Batch size (overrides the recipe).") var batch: Int?
    @Option(help: "Learning rate (overrides the recipe).") var lr: Float?
    @Option(help: "Min-SNR-γ loss weighting, e.g. 5 (overrides the recipe; diffusers' --snr_gamma).") var snrGamma: Float?
    @Flag(help: "Continue from the run folder's last checkpoint (a finished run goes on to a larger --steps).") var resume = false
    @Option(help: ArgumentHelp("Start from this model's weights: fine-tuning (a model or pipeline folder of the same kind; without --config the run takes its config, with the data's classes — a new class count draws a new class embedding). Video: an image model starts the spatial layers.", valueName: "MODEL"))
    var initFrom: String?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let steps, steps < 1 || steps > 10_000_000 { throw ValidationError("--steps must be between 1 and 10000000") }
        if let batch, batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let lr, !(lr > 0 && lr < 1) { throw ValidationError("--lr must be in (0, 1)") }
        if let snrGamma, !(snrGamma > 0 && snrGamma <= 1e6) { throw ValidationError("--snr-gamma must be in (0, 1000000]; 5 is usual") }
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
        if let snrGamma { recipe.snrGamma = snrGamma }
        if let initFrom {
            let url = URL(fileURLWithPath: initFrom)
            recipe.initFrom = url.standardizedFileURL.path
            if config == nil { recipe.model = try M.model(startingFrom: url, recipe: recipe) }
        }
        try adjust(&recipe)
        // Started from a model, the data is read the way it takes it (channels), not the other way round.
        let data = try M.loadData(spec, for: recipe, fitting: config == nil && initFrom == nil, note: { print($0) })
        if config == nil { recipe = M.fitted(recipe, to: data) }
        if let from = recipe.initFrom, initFrom != nil, !resume { print("starting from the weights of \(from)") }
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
        abstract: "Train a class-conditional image model (UNet2DModel), or a text-to-image model from captions, into a run folder.",
        discussion: """
        RUN receives recipe.json, checkpoints/ (resumable), model/ (a diffusers pipeline folder with \
        the EMA weights, usable with `diffuse generate image --model RUN/model`), previews/, \
        loss.csv and loss.png. Without --config the Fashion-MNIST recipe is used (the bundled \
        model's), following the data's classes and colour.

        Text to image: when DIR holds metadata.jsonl or metadata.csv with a `text` column (the \
        Hugging Face imagefolder layout `diffuse dataset emoji` writes), a Stable Diffusion \
        pipeline is trained from scratch in stages: the autoencoder (RUN/vae/), its decoder alone on \
        the frozen encoder (RUN/vae-decoder/: sharper colours, same latents), then the conditional \
        unet with a CLIP text encoder trained jointly (caption dropout for guidance). \
        RUN/model is a StableDiffusionPipeline folder for `generate image --model RUN/model \
        --prompt ...` and diffusers. Without --config the emoji recipe is used (64×64 images); \
        --steps, --batch and --lr set the unet stage, --vae-steps the autoencoder's, \
        --vae-decoder-steps the decoder's (0 skips it; a finished run given more goes on with it).
        """
    )

    @Option(help: "Training data: builtin:fashion-mnist, or a folder DIR/<class>/*.png (flat: unconditional).") var data: String
    @OptionGroup var options: TrainingOptions
    @Flag(help: "Mirror training images left-right at random (overrides the recipe).") var randomFlip = false
    @Option(help: "Text to image: autoencoder training steps (overrides the recipe).") var vaeSteps: Int?
    @Option(help: "Text to image: steps of the decoder-only stage on the frozen encoder (overrides the recipe; 0 skips it).")
    var vaeDecoderSteps: Int?

    func validate() throws {
        try TrainingOptions.check(data: data, ImageModality.self)
        if let vaeSteps, vaeSteps < 1 || vaeSteps > 10_000_000 { throw ValidationError("--vae-steps must be between 1 and 10000000") }
        if let vaeDecoderSteps, vaeDecoderSteps < 0 || vaeDecoderSteps > 10_000_000 {
            throw ValidationError("--vae-decoder-steps must be between 0 and 10000000")
        }
    }

    /// Whether DIR is a captioned folder (metadata.jsonl / metadata.csv).
    var isCaptioned: Bool {
        ["metadata.jsonl", "metadata.csv"].contains { FileManager.default.fileExists(atPath: URL(fileURLWithPath: data).appendingPathComponent($0).path) }
    }

    func run() throws {
        if isCaptioned { return try trainTextToImage() }
        if vaeSteps != nil || vaeDecoderSteps != nil {
            throw ValidationError("--vae-steps and --vae-decoder-steps are for captioned data (a folder with metadata.jsonl)")
        }
        try options.train(ImageModality.self, data: data) { if randomFlip { $0.randomFlip = true } }
    }

    func trainTextToImage() throws {
        if randomFlip { throw ValidationError("--random-flip is not used for captioned data (a flipped \"left arrow\" is no longer one)") }
        if options.initFrom != nil {
            throw ValidationError("--init-from is for class-folder and built-in data; a text-to-image run trains its VAE, text encoder and unet in stages from scratch")
        }
        options.runtime.apply()
        var recipe = try options.config.map { try TextToImageRecipe.load(URL(fileURLWithPath: $0)) } ?? .emoji()
        if let s = options.steps { recipe.training.steps = s }
        if let b = options.batch { recipe.training.batchSize = b }
        if let lr = options.lr { recipe.training.learningRate = lr }
        if let g = options.snrGamma { recipe.snrGamma = g }
        if let vaeSteps { recipe.vaeTraining.steps = vaeSteps }
        if let vaeDecoderSteps { recipe.vaeDecoderTraining.steps = vaeDecoderSteps }
        try recipe.validate()
        let size = recipe.vae.sampleSize
        let folder = try CaptionedImageFolder(URL(fileURLWithPath: data), size: (size[0], size[1]))
        let (images, captions) = try folder.loadAll()
        print("\(folder.count) captioned images \(size[1])×\(size[0]) from \(folder.folder.metadata.path)")
        let out = URL(fileURLWithPath: options.out)
        var progress: Progress?
        var stageName = ""
        var lossAvg: Float = 0
        try TextToImageTraining.run(recipe: recipe, images: images, captions: captions, out: out, resume: options.resume,
                                    note: { print($0) }) { stage, r in
            if stage.name != stageName {
                progress = Progress(total: stage.steps, label: stage.name)
                stageName = stage.name
                lossAvg = 0
            }
            lossAvg = lossAvg == 0 ? r.loss : 0.98 * lossAvg + 0.02 * r.loss
            progress?.update(r.step, status: String(format: "loss %.4f", lossAvg))
            return true
        }
        print("autoencoder: \(out.appendingPathComponent("vae/model").path) (loss curve vae/loss.png, reconstructions vae/previews/)")
        if recipe.vaeDecoderTraining.steps > 0 {
            print("decoder: \(out.appendingPathComponent("vae-decoder/model").path) (loss curve vae-decoder/loss.png, reconstructions vae-decoder/previews/)")
        }
        print("model: \(out.appendingPathComponent("model").path) — diffuse generate image --model \(out.appendingPathComponent("model").path) --prompt \"...\"")
        print("loss curve: \(out.appendingPathComponent("loss.png").path), previews: \(out.appendingPathComponent("previews").path)")
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
    @Option(help: "Fraction of steps trained on single frames as one-frame clips (overrides the recipe).") var jointImageFraction: Float?

    func validate() throws {
        try TrainingOptions.check(data: data, VideoModality.self)
        if let f = jointImageFraction, !(f >= 0 && f <= 1) { throw ValidationError("--joint-image-fraction must be in [0, 1]") }
    }

    func run() throws {
        try options.train(VideoModality.self, data: data) { recipe in
            if let f = jointImageFraction { recipe.jointImageFraction = f }
        }
    }
}
