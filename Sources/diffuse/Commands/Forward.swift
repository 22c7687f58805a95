import ArgumentParser
import Foundation
import Tensor
import NN
import Image

/// One denoiser call on tensors from a safetensors file: an interop and debugging tool.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one denoiser call of a model on tensors from a safetensors file.",
        discussion: """
        The input file holds `sample` [N, C, H, W], `timestep` (a scalar or [N], any float or \
        integer dtype) and, for class-conditional models, `class_labels` [N] (I64 or I32). Other \
        keys are ignored. The output file holds `sample`, the model's prediction.
        """
    )

    @Argument(help: "Model folder (diffusers layout), pipeline folder, or config.json (random weights).") var model: String
    @Option(help: "Input safetensors file.") var input: String
    @Option(help: "Output safetensors file.") var output: String
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let net = try UNet2DModel.load(URL(fileURLWithPath: model))
        let inURL = URL(fileURLWithPath: input)
        let file = try SafeTensorsFile(url: inURL)
        func fail(_ reason: String) -> Error { SafeTensorsError(file: inURL.path, reason: reason) }
        guard file.entry("sample") != nil else { throw fail("no tensor named 'sample'") }
        let sample = try file.tensor("sample")
        let c = net.config
        guard sample.rank == 4, sample.shape[1] == c.inChannels, sample.shape[0] >= 1 else {
            throw fail("'sample' has shape \(sample.shape); the model takes [N, \(c.inChannels), H, W]")
        }
        let down = 1 << (c.blockOutChannels.count - 1)
        guard sample.shape[2] % down == 0, sample.shape[3] % down == 0 else {
            throw fail("'sample' is \(sample.shape[2])×\(sample.shape[3]); the model needs multiples of \(down)")
        }
        guard file.entry("timestep") != nil else { throw fail("no tensor named 'timestep'") }
        let t = try file.tensor("timestep").scalars
        guard t.count == 1 || t.count == sample.shape[0] else {
            throw fail("'timestep' has \(t.count) values for a batch of \(sample.shape[0])")
        }
        var labels: [Int]? = nil
        if c.isClassConditional {
            guard file.entry("class_labels") != nil else { throw fail("the model is class-conditional: 'class_labels' is required") }
            let l = try file.integers("class_labels")
            guard l.count == sample.shape[0] else { throw fail("'class_labels' has \(l.count) values for a batch of \(sample.shape[0])") }
            if let k = c.numClassEmbeds, let bad = l.first(where: { $0 < 0 || $0 >= k }) {
                throw fail("class label \(bad) outside 0..<\(k)")
            }
            labels = l
        }
        net.setTraining(false)
        let out = GradMode.withoutGrad { net(sample, timesteps: t, classLabels: labels) }
        try SafeTensors.write(["sample": out], to: URL(fileURLWithPath: output))
    }
}
