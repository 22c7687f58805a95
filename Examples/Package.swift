// swift-tools-version:6.0
// Examples of diffuse as a library: a package of its own that depends on the root package by
// path, as a user's program would (`.ci/run` builds it).
import PackageDescription

let package = Package(
    name: "diffuse-examples",
    dependencies: [.package(name: "diffuse", path: "..")],
    targets: [
        // Eight sneakers from the bundled image model, with the command line's defaults.
        .executableTarget(name: "generate-sneakers", dependencies: [
            .product(name: "Image", package: "diffuse"), .product(name: "Diffusion", package: "diffuse"),
        ], path: "Sources/generate-sneakers"),
    ],
    swiftLanguageModes: [.v5]
)
