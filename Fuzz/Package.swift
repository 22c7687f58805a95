// swift-tools-version:6.0
// libFuzzer targets for every parser of user files (issue 21), outside the main package so that
// `swift build` there never needs libFuzzer. Built and run by `make fuzz` (see ../Makefile):
//
//     swift build --package-path Fuzz -c release -Xswiftc -sanitize=fuzzer -Xswiftc -use-ld=lld  (gold cannot link it)
//     Fuzz/.build/release/diffuse-fuzz TARGET [libFuzzer flags] [corpus folders]
//
// TARGET: png, wav, mp4, safetensors, config, tokenizer, manifest, checkpoint.
import PackageDescription

let package = Package(
    name: "diffuse-fuzz",
    dependencies: [.package(name: "diffuse", path: "..")],
    targets: [
        .executableTarget(name: "diffuse-fuzz", dependencies: [
            .product(name: "Tensor", package: "diffuse"), .product(name: "NN", package: "diffuse"),
            .product(name: "Diffusion", package: "diffuse"), .product(name: "Text", package: "diffuse"),
            .product(name: "Media", package: "diffuse"), .product(name: "Workflow", package: "diffuse"),
            .product(name: "Image", package: "diffuse"), .product(name: "Audio", package: "diffuse"),
            .product(name: "Video", package: "diffuse"),
        ], path: "Sources/diffuse-fuzz"),
    ],
    swiftLanguageModes: [.v5]
)
