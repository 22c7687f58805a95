import Foundation
import Tensor
import NN
import Diffusion

/// A model whose config and weights live in a diffusers model folder:
///
///     config.json                              `_class_name` = `className`, the config's keys
///     diffusion_pytorch_model.safetensors      F32, F16 or BF16
///
/// `load` and `save` are written once here for every such model (the denoisers, the VAE).
public protocol FolderModule: Module {
    associatedtype Config: Codable & Equatable & Sendable
    var config: Config { get }
    init(config: Config) throws
    /// The `_class_name` its config.json declares.
    static var className: String { get }
    /// Its folder in a pipeline folder ("unet", "vae").
    static var component: String { get }
}

/// A denoiser in a model folder, as the sampling loop, the trainer and the command line see it.
public protocol FolderModel: FolderModule, DiffusionModel {
    /// One sample's shape [C, …] at the size the config names (what generation draws by default).
    var sampleShape: [Int] { get }
    /// Why a batch of `shape` [N, C, …] does not fit the model, or nil when it does.
    func problem(with shape: [Int]) -> String?
    /// Roughly the bytes one forward pass on a batch of `shape` [N, C, …] holds at once (the
    /// skip states and a block's intermediates, level by level): what generation weighs against
    /// `MemoryBudget` before it starts. Only called on shapes `problem(with:)` accepts.
    func activationBytes(_ shape: [Int]) -> Double
    /// Labels a batch may carry are 0..<labelRange; nil for a model that takes none.
    var labelRange: Int? { get }
    /// A few lines describing the model for `diffuse inspect` (sizes, blocks, conditioning).
    var summary: [String] { get }
}

extension FolderModule {
    public static var weightsName: String { ModelFolder.weightsName }
    public static var component: String { "unet" }

    /// The config as a JSON object (what config.json holds).
    public func configJSON() throws -> [String: JSONValue] { try Self.json(of: config) }

    /// A config of this model's kind as a JSON object.
    public static func json(of config: Config) throws -> [String: JSONValue] {
        try JSONDecoder().decode([String: JSONValue].self, from: JSONEncoder().encode(config))
    }

    /// A model folder (config.json + diffusion_pytorch_model.safetensors), a pipeline folder
    /// (model_index.json + `component`/) or a bare config.json (random weights, seeded by
    /// `NNInit`). Loading is strict: every missing, unexpected or mis-shaped tensor is reported at
    /// once, so no random draws are made for weights the file overwrites (SD 1.5's unet: ~40 s).
    /// A config that declares another class is an error naming the file and both classes.
    /// `keepHalf`: F16/BF16 layer weights stay 16-bit in memory (inference only; see `Module.load`).
    public static func load(_ url: URL, keepHalf: Bool = false) throws -> Self {
        let (config, weightsURL) = try ModelFolder.config(Config.self, at: url, className: className, component: component)
        let model: Self
        do {
            model = try NNInit.budgeted(className, bytesPerParameter: keepHalf ? 2 : 4) {
                try weightsURL == nil ? Self(config: config) : NNInit.skippingRandomInit { try Self(config: config) }
            }
        } catch let e as MemoryBudgetError {
            throw ModelFolderError(path: url.path, reason: e.description)
        }
        if let weightsURL { try model.load(safetensors: weightsURL, keepHalf: keepHalf) }
        return model
    }

    /// Writes config.json and diffusion_pytorch_model.safetensors into `folder` (created if
    /// needed), each atomically.
    public func save(to folder: URL, dtype: SafeTensorsDType = .F32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try save(safetensors: folder.appendingPathComponent(ModelFolder.weightsName), dtype: dtype, metadata: ["format": "pt"])
        try ConfigFile.write(config, to: folder.appendingPathComponent("config.json"))
    }
}

extension FolderModel {
    /// Config keys a fine-tuned model may change: the class count (the class embedding is then
    /// drawn afresh), the sample size (convolutions and attention take any size) and the version.
    public static var startLooseKeys: Set<String> { ["num_class_embeds", "sample_size", "_diffusers_version"] }

    /// Fine-tuning's start (`--init-from`): the weights of the model or pipeline folder at `url`,
    /// read into this model. Its config must be this model's but for `startLooseKeys` (an error
    /// names the file and every key that differs); with another class count the class embedding
    /// keeps its fresh draw, every other tensor must load. Returns the tensors left as drawn.
    @discardableResult
    public func start(from url: URL) throws -> [String] {
        let (config, weights) = try ModelFolder.config(Config.self, at: url, className: Self.className, component: Self.component)
        guard let weights else { throw ModelFolderError(path: url.path, reason: "has a config but no weights to start from") }
        var a = try Self.json(of: config), b = try configJSON()
        for k in Self.startLooseKeys { a[k] = nil; b[k] = nil }
        let differing = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
        guard differing.isEmpty else {
            throw ModelFolderError(path: url.path, reason: "its config differs from the recipe's model in \(differing.joined(separator: ", ")) "
                                   + "(fine-tuning keeps the architecture; without --config the run takes the folder's)")
        }
        let report = try load(from: SafeTensorsFile(url: weights), strict: false)
        let skipped = report.missing + report.unexpected + report.mismatched
        guard skipped.allSatisfy({ $0.hasPrefix("class_embedding.") }) else {
            throw ModelFolderError(path: url.path, reason: "these weights do not fit the model: \(skipped.prefix(8).joined(separator: ", "))")
        }
        return Array(Set(skipped)).sorted()
    }
}

/// A labelled training set as the training run sees it: `count` items, class names by label
/// (empty: unconditional), and batches of items by index.
public protocol TrainingData: AnyObject {
    var count: Int { get }
    var classNames: [String] { get }
    /// Items [N, C, …] and their labels.
    func batch(_ indices: [Int]) throws -> (Tensor, [Int])
    /// Files that could not be read (skipped with a warning, never fatal).
    var skipped: Set<String> { get }
}

/// Settings a modality adds to the shared recipe, decoded from and encoded into the recipe's
/// own top-level keys (recipe.json stays one flat object).
public protocol RecipeExtras: Codable, Equatable, Sendable {
    /// The extras of the modality's default recipe (keys left out of a recipe.json take these).
    static var defaults: Self { get }
    /// Whether a run made with `self` can go on with `other` (what training reads must match).
    func trainsLike(_ other: Self) -> Bool
    /// These extras for a run resumed from one made with `old` (default: as given).
    func resumed(from old: Self) -> Self
}

extension RecipeExtras {
    public func resumed(from old: Self) -> Self { self }
}

/// For modalities with nothing to add.
public struct NoRecipeExtras: RecipeExtras {
    public init() {}
    public static var defaults: NoRecipeExtras { NoRecipeExtras() }
    public func trainsLike(_ other: NoRecipeExtras) -> Bool { true }
}

/// What one modality supplies — its model, data, codec and default recipe; everything else
/// (the pipeline folder, generation, the training run, augmentation) is shared and written once:
/// `Pipeline<M>`, `Recipe<M>`, `Training.run`, `DatasetAugment`.
///
/// A latent model (the text-to-image issue) fits the same shape: its `Model` denoises latents,
/// and its `read`/`write` pass through the VAE around it; a prompt is one more `Conditioning`.
public protocol Modality {
    associatedtype Model: FolderModel
    associatedtype Data: TrainingData
    associatedtype Extras: RecipeExtras = NoRecipeExtras

    /// The word in commands and messages ("image"), and the bundled model's folder samples/<name>.
    static var name: String { get }
    /// model_index.json's `_class_name` (diffusers' pipeline class where one fits).
    static var pipelineClass: String { get }
    /// The extension of the files generation and augmentation write ("png", "wav", "mp4").
    static var fileExtension: String { get }
    /// The extensions of the files a data folder of this modality holds.
    static var dataExtensions: Set<String> { get }
    /// The `builtin:` training set `loadData` makes on first use.
    static var builtinData: String { get }

    /// The recipe `train` uses without `--config` (the bundled model's).
    static func defaultRecipe(classes: Int) -> Recipe<Self>
    /// Checks the recipe's model config before anything is written or allocated.
    static func validate(_ recipe: Recipe<Self>) throws
    /// The training data `spec` names (a folder, or the modality's `builtin:` set, made on first
    /// use with `note` saying so), read the way `recipe` trains on it; `fitting`: channels follow
    /// the data rather than the recipe.
    static func loadData(_ spec: String, for recipe: Recipe<Self>, fitting: Bool, note: (String) -> Void) throws -> Data
    /// `recipe` made to fit `data`: channels and class count (+ the null label); sizes already
    /// came from the recipe when the data was read.
    static func fitted(_ recipe: Recipe<Self>, to data: Data) -> Recipe<Self>
    /// Why `recipe`'s model cannot train on `data` (shapes, rates), or nil.
    static func mismatch(_ recipe: Recipe<Self>, _ data: Data) -> String?
    /// A new model for a run (its weights seeded by the recipe, or started from `init_from`; the
    /// video model may start from an image model). `resuming`: the run's checkpoint will
    /// overwrite the weights.
    static func makeModel(for recipe: Recipe<Self>, resuming: Bool) throws -> Model
    /// The model config a run starting from the folder at `url` trains (`--init-from` without
    /// `--config`; the video model takes an image model's for its spatial layers).
    static func model(startingFrom url: URL, recipe: Recipe<Self>) throws -> Model.Config
    /// One training batch [B, C, …] and its labels.
    static func batch(_ data: Data, recipe: Recipe<Self>, rng: inout RandomGenerator) throws -> (Tensor, [Int])
    /// What a training preview draws: `classes` (nil: an unconditional model), guided when the
    /// model has the null label. Default: one sample per class, up to 8 spread over the classes
    /// (4 unconditional), 20 DPM-Solver++ steps, seed 1, guidance 2.
    static func previewRequest(classes: Int?, guided: Bool) -> SamplingRequest
    /// Writes a training preview of `samples` [N, C, …] (RUN/previews/step-N.<ext>, `base` has no extension).
    static func writePreview(_ samples: Tensor, of pipeline: Pipeline<Self>, to base: URL) throws
    /// One file as a model input [1, C, …] at the pipeline's size (augmentation's vary sources).
    static func read(_ url: URL, for pipeline: Pipeline<Self>) throws -> Tensor
    /// Writes one sample [C, …] in [-1, 1] to `url` (`fileExtension`).
    static func write(_ sample: Tensor, of pipeline: Pipeline<Self>, to url: URL) throws
    /// The shape [C, …] of the file at `url` as `write(_:of:to:shape:)` can give it back, or nil
    /// when files are written in the model's shape whatever the inputs are (default).
    static func fileShape(_ url: URL) throws -> [Int]?
    /// Writes `sample` (the model's shape) in `shape` (a `fileShape`), or as `write` does when nil.
    static func write(_ sample: Tensor, of pipeline: Pipeline<Self>, to url: URL, shape: [Int]?) throws
}

extension Modality {
    public static var pipelineClass: String { "DiffusionPipeline" }
    public static func fileShape(_ url: URL) throws -> [Int]? { nil }
    public static func write(_ sample: Tensor, of pipeline: Pipeline<Self>, to url: URL, shape: [Int]?) throws {
        try write(sample, of: pipeline, to: url)
    }
    public static func mismatch(_ recipe: Recipe<Self>, _ data: Data) -> String? { nil }
    public static func validate(_ recipe: Recipe<Self>) throws {}
    /// A model seeded by the recipe; a run that does not resume starts from the recipe's
    /// `init_from` folder (fine-tuning) when it names one.
    public static func makeModel(for recipe: Recipe<Self>, resuming: Bool) throws -> Model {
        NNInit.seed(recipe.training.seed)
        let model = try NNInit.budgeted("training a \(Model.className)", bytesPerParameter: NNInit.training) { try Model(config: recipe.model) }
        if let from = recipe.initFrom, !resuming { try model.start(from: URL(fileURLWithPath: from)) }
        return model
    }
    /// The recipe's model config for a run that starts from the folder at `url` (`--init-from`
    /// without `--config`): the folder's own.
    public static func model(startingFrom url: URL, recipe: Recipe<Self>) throws -> Model.Config {
        try ModelFolder.config(Model.Config.self, at: url, className: Model.className, component: Model.component).config
    }
    public static func previewRequest(classes: Int?, guided: Bool) -> SamplingRequest {
        var r = SamplingRequest(count: 4, sampler: .dpmpp2m, steps: 20, seed: 1, guidance: guided ? 2 : 1)
        if let classes {
            let labels = ClassLabels.spread(classes, 8)
            r.count = labels.count
            r.conditioning = .labels(labels)
        }
        return r
    }
    public static func batch(_ data: Data, recipe: Recipe<Self>, rng: inout RandomGenerator) throws -> (Tensor, [Int]) {
        try data.batch(rng.integers(recipe.training.batchSize, below: data.count))
    }
}
