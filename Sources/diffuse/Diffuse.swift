import ArgumentParser
import Tensor

@main
struct Diffuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diffuse",
        abstract: "Diffusion models on the CPU: train, generate, augment, measure.",
        version: "0.1.0",
        subcommands: [Train.self, Generate.self, Augment.self, Dataset.self, Evaluate.self, Inspect.self, Forward.self, Tokenize.self, Export.self, SpectrogramCommand.self, Bench.self]
    )

    static func main() {
        main(attachingNegativeValues(Array(CommandLine.arguments.dropFirst())))
    }

    /// `--count -5` as `--count=-5`: ArgumentParser reads a value that starts with a dash as
    /// another option ("Missing value for '--count'"); attached, it reaches the option's own
    /// check, which says what the value must be.
    static func attachingNegativeValues(_ args: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a.hasPrefix("--"), !a.contains("="), a.count > 2, i + 1 < args.count,
               args[i + 1].count > 1, args[i + 1].hasPrefix("-"), Double(args[i + 1]) != nil {
                out.append(a + "=" + args[i + 1])
                i += 2
            } else {
                out.append(a)
                i += 1
            }
        }
        return out
    }
}
