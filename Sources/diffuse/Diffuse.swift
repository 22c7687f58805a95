import ArgumentParser
import Tensor

@main
struct Diffuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diffuse",
        abstract: "Diffusion models on the CPU: train, generate, augment, measure.",
        version: "0.1.0",
        subcommands: [Train.self, Generate.self, Augment.self, Dataset.self, Evaluate.self, Inspect.self, Forward.self, Tokenize.self, Export.self, SpectrogramCommand.self, Bench.self, ServeCommand.self]
    )
}
