// swift-tools-version:6.1
// diffuse — diffusion models for images, audio and video on the CPU.
// Sections, top-down: C libraries, core, shared media and workflow, modalities, evaluation,
// command line, tests. Each layer imports only the layers above it in this file; a modality
// imports no other modality but Video → Image (its U-Net runs the image U-Net on every frame).
import PackageDescription

// Swift 5 language mode: the numeric kernels hand raw buffers to worker threads, which the
// Swift 6 checker cannot follow; concurrency is confined to `Parallel` (Sources/Tensor).
let swiftSettings: [SwiftSetting] = []

let package = Package(
    name: "diffuse",
    products: [
        .executable(name: "diffuse", targets: ["diffuse"]),
        .library(name: "Tensor", targets: ["Tensor"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Diffusion", targets: ["Diffusion"]),
        .library(name: "Text", targets: ["Text"]),
        .library(name: "Media", targets: ["Media"]),
        .library(name: "Workflow", targets: ["Workflow"]),
        .library(name: "Image", targets: ["Image"]),
        .library(name: "Audio", targets: ["Audio"]),
        .library(name: "Video", targets: ["Video"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
        .library(name: "Serve", targets: ["Serve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `diffuse serve`'s HTTP server; no traits: swift-configuration is not needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        // Hummingbird's own dependencies, named for the connection (NIOCore) and shutdown (ServiceLifecycle).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // MARK: C libraries (implementation details; each imported by one Swift file)
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CSndFile", path: "Sources/CSndFile", pkgConfig: "sndfile",
                       providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CFFmpeg", path: "Sources/CFFmpeg",
                       pkgConfig: "libavformat libavcodec libavutil libswscale",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev", "libswscale-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Open MPI: used only when `mpirun` starts the process (data-parallel training, sharded outputs).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        // MARK: Core
        // Pointwise kernels in C, built for AVX-512 / AVX2+FMA / baseline and picked at load time:
        // vector speed without building the whole package for one CPU.
        .target(name: "CKernels", path: "Sources/CKernels"),
        .target(name: "Tensor", dependencies: ["CBLAS", "CKernels"], path: "Sources/Tensor",
                swiftSettings: swiftSettings),
        .target(name: "NN", dependencies: ["Tensor"], path: "Sources/NN", swiftSettings: swiftSettings),
        // Schedules, parameterizations, samplers, the objective and the trainer; no media.
        .target(name: "Diffusion", dependencies: ["Tensor", "NN"], path: "Sources/Diffusion",
                swiftSettings: swiftSettings),
        // Conditioning encoders (CLIP tokenizer and text model); the built-in CLIP vocabulary is a resource.
        .target(name: "Text", dependencies: ["Tensor", "NN"], path: "Sources/Text",
                resources: [.copy("Resources/clip-vit-large-patch14")], swiftSettings: swiftSettings),

        // MARK: Shared media and workflow
        // `Media`: what every modality's files share — typed errors, atomic writes, the PNG codec
        // (images, and the plots and spectrograms of the others), loss curves.
        .target(name: "Media", dependencies: ["Tensor", "NN", "CPNG"], path: "Modalities/Media", swiftSettings: swiftSettings),
        // `Workflow`: the modality contract (`Modality`, `FolderModel`) and everything written once
        // for all modalities on top of it — pipeline folders and class labels, recipes, training
        // runs, model and class folders, augmentation and its manifest, and the ranks of an `mpirun`
        // job (MPI.swift, the one file that imports CMPI). Diffusion knows no files.
        .target(name: "Workflow", dependencies: ["Tensor", "NN", "Diffusion", "Media", "CMPI"], path: "Sources/Workflow",
                swiftSettings: swiftSettings),

        // MARK: Modalities (each supplies its model, codec, data and default recipe)
        .target(name: "Image", dependencies: ["Tensor", "NN", "Diffusion", "Text", "Media", "Workflow", "CZlib"],
                path: "Modalities/Image", swiftSettings: swiftSettings),
        .target(name: "Audio", dependencies: ["Tensor", "NN", "Diffusion", "Media", "Workflow", "CSndFile"], path: "Modalities/Audio",
                swiftSettings: swiftSettings),
        // Video's U-Net is Image's UNet2DModel per frame plus temporal layers; its data reads through Image too.
        .target(name: "Video", dependencies: ["Tensor", "NN", "Diffusion", "Media", "Workflow", "Image", "CFFmpeg"],
                path: "Modalities/Video", swiftSettings: swiftSettings),

        // MARK: Evaluation
        // Metrics on feature matrices [N, D] (FD, KID, precision/recall, memorisation), the probe
        // classifiers whose features they use, and each modality's own measures (pitch, motion);
        // sits above the modalities because it reads all their data.
        .target(name: "Evaluation", dependencies: ["Tensor", "NN", "Media", "Workflow", "Image", "Audio", "Video"], path: "Sources/Evaluation",
                swiftSettings: swiftSettings),

        // MARK: Server
        // `diffuse serve`: the HTTP API (A1111 subset, OpenAI images, our own class/audio/video/augment
        // endpoints), its job queue and the web page (a resource); calls the same library paths as the CLI.
        .target(name: "Serve", dependencies: ["Tensor", "NN", "Diffusion", "Text", "Media", "Workflow", "Image", "Audio", "Video",
                                              .product(name: "Hummingbird", package: "hummingbird"),
                                              .product(name: "NIOCore", package: "swift-nio"),
                                              .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Sources/Serve", resources: [.copy("Resources/web")], swiftSettings: swiftSettings),

        // MARK: Command line
        .executableTarget(name: "diffuse", dependencies: [
            "Tensor", "NN", "Diffusion", "Text", "Media", "Workflow", "Image", "Audio", "Video", "Evaluation", "Serve",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/diffuse", swiftSettings: swiftSettings),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["Tensor"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "TestSupport"], path: "Tests/TensorTests"),
        .testTarget(name: "NNTests", dependencies: ["NN", "Tensor", "TestSupport"], path: "Tests/NNTests",
                    exclude: ["Goldens", "Corrupt"]),
        .testTarget(name: "ImageModelTests", dependencies: ["Image", "Workflow", "Text", "Diffusion", "NN", "Tensor", "TestSupport"],
                    path: "Tests/ImageModelTests", exclude: ["Goldens"]),
        .testTarget(name: "AudioModelTests", dependencies: ["Audio", "Diffusion", "NN", "Tensor", "TestSupport"],
                    path: "Tests/AudioModelTests", exclude: ["Goldens"]),  // goldens read via #filePath
        .testTarget(name: "DiffusionTests", dependencies: ["Diffusion", "NN", "Tensor", "TestSupport"],
                    path: "Tests/DiffusionTests", exclude: ["Goldens"]),  // goldens read via #filePath
        .testTarget(name: "TextTests", dependencies: ["Text", "NN", "Tensor", "TestSupport"],
                    path: "Tests/TextTests", exclude: ["Goldens"]),  // goldens read via #filePath
        .testTarget(name: "TrainingTests", dependencies: ["Diffusion", "NN", "Tensor", "TestSupport"],
                    path: "Tests/TrainingTests"),
        // Corrupt/ and Formats/ are found next to the test sources (#filePath).
        .testTarget(name: "ImageTests", dependencies: ["Image", "Tensor", "TestSupport"], path: "Tests/ImageTests",
                    exclude: ["Corrupt", "Formats"]),
        .testTarget(name: "AudioTests", dependencies: ["Audio", "Image", "Tensor", "TestSupport"], path: "Tests/AudioTests",
                    exclude: ["Corrupt"]),
        .testTarget(name: "VideoTests", dependencies: ["Video", "Tensor", "TestSupport"], path: "Tests/VideoTests",
                    exclude: ["Corrupt"]),
        // The video model, its data and its commands (runs the built `diffuse` too).
        .testTarget(name: "VideoModelTests", dependencies: ["diffuse", "Video", "Evaluation", "Image", "Diffusion", "NN", "Tensor", "TestSupport"],
                    path: "Tests/VideoModelTests"),
        // Runs the built `diffuse` executable; depending on it makes `swift build --build-tests` build it.
        .testTarget(name: "CLITests", dependencies: ["diffuse", "TestSupport", "Tensor", "NN", "Image", "Audio", "Diffusion", "Media", "Workflow"], path: "Tests/CLITests",
                    exclude: ["Recorded", "Hostile"]),
        // `diffuse serve` over HTTP on a loopback port, in process and as the built `diffuse` (SIGTERM),
        // and the web page in headless Chromium.
        .testTarget(name: "ServeTests", dependencies: ["diffuse", "Serve", "Image", "Media", "Tensor", "TestSupport", "Workflow"], path: "Tests/ServeTests"),
        // Metrics against closed forms, the probe, and `diffuse evaluate image|video` end to end (runs the executable).
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "diffuse", "TestSupport", "Image", "Video", "NN", "Tensor"],
                    path: "Tests/EvaluationTests"),
    ],
    swiftLanguageModes: [.v5]
)
