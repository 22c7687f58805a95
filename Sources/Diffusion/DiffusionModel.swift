import Tensor
import NN

/// A denoiser network as the trainer and the generation loop see it, whatever the modality.
public protocol DiffusionModel: Module {
    /// x: [N, C, ...]; one (training-)timestep per sample; class labels per sample when the
    /// model is class-conditional. Returns the prediction its training target names, shaped like x.
    func predict(_ x: Tensor, timesteps: [Float], labels: [Int]?) -> Tensor

    /// Number of label embeddings (classes, plus the null label when trained for guidance);
    /// nil for an unconditional model.
    var labelCount: Int? { get }
}
