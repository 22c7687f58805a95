// Eight sneakers from the bundled image model as one grid PNG — what
// `diffuse generate image --class sneaker --count 8 --grid -o sneakers.png` does, from Swift.
//
//   swift run --package-path Examples generate-sneakers [samples/image] [sneakers.png]
import Foundation
import Diffusion
import Image

let args = CommandLine.arguments
let model = URL(fileURLWithPath: args.count > 1 ? args[1] : "samples/image")
let out = URL(fileURLWithPath: args.count > 2 ? args[2] : "sneakers.png")

let pipeline = try ImagePipeline.load(model)
guard let sneaker = pipeline.label("sneaker") else { fatalError("\(model.path) has no class sneaker: \(pipeline.classNames)") }
// The command line's defaults: DPM-Solver++ 2M, 20 steps, guidance 2, seed 0.
let request = SamplingRequest(count: 8, conditioning: .labels([Int](repeating: sneaker, count: 8)), sampler: .dpmpp2m,
                              steps: 20, seed: 0, guidance: 2)
let images = try pipeline.generate(request)          // [8, 1, 32, 32] in [-1, 1]
try ImageGrid.write(images, columns: 8, to: out)
print(out.path)
