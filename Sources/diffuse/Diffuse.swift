import ArgumentParser
import Foundation
import Tensor
import Workflow

@main
struct Diffuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diffuse",
        abstract: "Diffusion models on the CPU: train, generate, augment, measure.",
        discussion: "`diffuse COMMAND --help` shows every option of a command (`diffuse generate image --help`).",
        version: "0.1.0",
        subcommands: [Train.self, Distill.self, Generate.self, Augment.self, Dataset.self, Evaluate.self, Inspect.self, Forward.self, Tokenize.self, Export.self, SpectrogramCommand.self, Bench.self, ServeCommand.self]
    )

    /// ArgumentParser's `main`, except that a usage error found while a command runs (a class the
    /// model lacks, a bad frame list) shows that command's usage rather than the top level's.
    ///
    /// Under `mpirun` every rank runs the command; rank 0 alone prints (the others' standard
    /// output goes to /dev/null, their errors still show), and a rank that fails takes the job
    /// down at once (`MPI_Abort`) rather than leaving the others waiting for it.
    static func main() {
        let ranks = MPIRanks.start()
        if let ranks, !ranks.isWriter { silenceStandardOutput() }
        var command: ParsableCommand
        do { command = try parseAsRoot(attachingNegativeValues(Array(CommandLine.arguments.dropFirst()))) } catch { fail(error, ranks) }
        if let ranks, !Self.runsOnRanks.contains(where: { $0 == type(of: command) }) {
            ranks.abort("Error: `\(type(of: command).configuration.commandName ?? "this command")` runs in one process; under mpirun only train, generate and augment split their work. Start it without mpirun.")
        }
        do { try command.run() } catch let e as ValidationError {
            let sub = type(of: command)
            let usage = usageString(for: sub)
            let name = usage.split(separator: " ").prefix { !$0.hasPrefix("[") && !$0.hasPrefix("<") && !$0.hasPrefix("-") }.joined(separator: " ")
            ranks?.abort("Error: \(e.message)", code: ExitCode.validationFailure.rawValue)
            note("Error: \(e.message)\nUsage: \(usage)\n  See '\(name) --help' for more information.")
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            fail(error, ranks)
        }
        ranks?.finish()
    }

    /// The commands that split their work over the ranks of an `mpirun` job.
    static let runsOnRanks: [ParsableCommand.Type] = [TrainImage.self, TrainAudio.self, TrainVideo.self,
                                                      GenerateImage.self, GenerateAudio.self, GenerateVideo.self,
                                                      AugmentImage.self, AugmentAudio.self, AugmentVideo.self]

    /// ArgumentParser's exit for `error`; under `mpirun`, the whole job's.
    static func fail(_ error: Error, _ ranks: MPIRanks?) -> Never {
        guard let ranks else { exit(withError: error) }
        let code = exitCode(for: error)
        if code == .success {  // --help, --version
            print(fullMessage(for: error))
            ranks.finish()
            Foundation.exit(0)
        }
        ranks.abort(fullMessage(for: error), code: code.rawValue)
    }

    static func silenceStandardOutput() {
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 { dup2(null, 1); close(null) }
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
