import ArgumentParser
import Foundation
import Tensor
import NN
import Image
import Diffusion

/// One denoiser call on tensors from a safetensors file: an interop and debugging tool.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one denoiser call of a model on tensors from a safetensors file.",
        discussion: """
        The input file holds `sample` ([N, C, H, W] for a UNet2DModel, [N, C, L] for a \
        UNet1DModel: config.json's `_class_name` decides), `timestep` (a scalar or [N], any float \
        or integer dtype) and, for class-conditional models, `class_labels` [N] (I64 or I32). \
        Other keys are ignored. The output file holds `sample`, the model's prediction.
        """
    )

    @Argument(help: "Model folder (diffusers layout), pipeline folder, or config.json (random weights).") var model: String
    @Option(help: "Input safetensors file.") var input: String
    @Option(help: "Output safetensors file.") var output: String
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let net = try Models.load(URL(fileURLWithPath: model))
        let inURL = URL(fileURLWithPath: input)
        let file = try SafeTensorsFile(url: inURL)
        func fail(_ reason: String) -> Error { SafeTensorsError(file: inURL.path, reason: reason) }
        guard file.entry("sample") != nil else { throw fail("no tensor named 'sample'") }
        let sample = try file.tensor("sample")
        if let problem = net.problem(with: sample.shape) { throw fail("'sample' \(problem)") }
        guard file.entry("timestep") != nil else { throw fail("no tensor named 'timestep'") }
        let t = try file.tensor("timestep").scalars
        guard t.count == 1 || t.count == sample.shape[0] else {
            throw fail("'timestep' has \(t.count) values for a batch of \(sample.shape[0])")
        }
        var labels: [Int]? = nil
        if net.labelRange != nil {
            guard file.entry("class_labels") != nil else { throw fail("the model is class-conditional: 'class_labels' is required") }
            let l = try file.integers("class_labels")
            guard l.count == sample.shape[0] else { throw fail("'class_labels' has \(l.count) values for a batch of \(sample.shape[0])") }
            if let k = net.labelCount, let bad = l.first(where: { $0 < 0 || $0 >= k }) {
                throw fail("class label \(bad) outside 0..<\(k)")
            }
            labels = l
        }
        net.setTraining(false)
        let out = GradMode.withoutGrad { net.predict(sample, timesteps: t, labels: labels) }
        try SafeTensors.write(["sample": out], to: URL(fileURLWithPath: output))
    }
}
