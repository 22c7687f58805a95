import ArgumentParser
import Foundation
import Tensor

@main
struct Diffuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diffuse",
        abstract: "Diffusion models on the CPU: train, generate, augment, measure.",
        discussion: "`diffuse COMMAND --help` shows every option of a command (`diffuse generate image --help`).",
        version: "0.1.0",
        subcommands: [Train.self, Generate.self, Augment.self, Dataset.self, Evaluate.self, Inspect.self, Forward.self, Tokenize.self, Export.self, SpectrogramCommand.self, Bench.self, ServeCommand.self]
    )

    /// ArgumentParser's `main`, except that a usage error found while a command runs (a class the
    /// model lacks, a bad frame list) shows that command's usage rather than the top level's.
    static func main() {
        var command: ParsableCommand
        do { command = try parseAsRoot(attachingNegativeValues(Array(CommandLine.arguments.dropFirst()))) } catch { exit(withError: error) }
        do { try command.run() } catch let e as ValidationError {
            let sub = type(of: command)
            let usage = usageString(for: sub)
            let name = usage.split(separator: " ").prefix { !$0.hasPrefix("[") && !$0.hasPrefix("<") && !$0.hasPrefix("-") }.joined(separator: " ")
            note("Error: \(e.message)\nUsage: \(usage)\n  See '\(name) --help' for more information.")
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            exit(withError: error)
        }
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
