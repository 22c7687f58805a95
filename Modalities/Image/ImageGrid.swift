import Foundation
import Media
import Tensor

/// Tiles a batch of images into one picture, row-major, for sample previews.
public enum ImageGrid {
    /// Tiles `images` [N, C, H, W] into [C, rows*(H+p)+p, cols*(W+p)+p] with `padding` pixels
    /// of `padValue` between and around the tiles; rows = ceil(N / columns). Empty cells at
    /// the end are filled with `padValue`.
    /// - Precondition: rank 4, columns >= 1, padding >= 0.
    public static func make(_ images: Tensor, columns: Int, padding: Int = 2, padValue: Float = -1) -> Tensor {
        precondition(images.rank == 4, "ImageGrid: expected [N, C, H, W], got \(images.shape)")
        precondition(columns >= 1 && padding >= 0, "ImageGrid: columns \(columns) must be >= 1, padding \(padding) >= 0")
        let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let cols = min(columns, max(n, 1))
        let rows = (n + cols - 1) / cols
        let gh = rows * (h + padding) + padding, gw = cols * (w + padding) + padding
        let grid = Tensor.full([c, gh, gw], padValue)
        let src = images.data, dst = grid.data
        for i in 0..<n {
            let y0 = padding + (i / cols) * (h + padding), x0 = padding + (i % cols) * (w + padding)
            for k in 0..<c {
                for y in 0..<h {
                    // images[i, k, y, :] -> grid[k, y0 + y, x0 ..< x0 + w]
                    (dst + (k * gh + y0 + y) * gw + x0).update(from: src + ((i * c + k) * h + y) * w, count: w)
                }
            }
        }
        return grid
    }

    /// Writes `images` [N, C, H, W] in [-1, 1] (C = 1, 3 or 4) as one 8-bit PNG grid, atomically.
    /// - Throws: `MediaError.invalidArgument` for columns < 1 or padding < 0 or an empty batch.
    public static func write(_ images: Tensor, columns: Int, padding: Int = 2, padValue: Float = -1,
                             to url: URL) throws {
        guard columns >= 1, padding >= 0 else {
            throw MediaError.invalidArgument(file: url.path, reason: "grid needs columns >= 1 and padding >= 0, got \(columns) and \(padding)")
        }
        guard images.rank == 4, images.shape[0] >= 1 else {
            throw MediaError.invalidArgument(file: url.path, reason: "grid needs a non-empty [N, C, H, W] batch, got \(images.shape)")
        }
        try PNGCodec.write(make(images, columns: columns, padding: padding, padValue: padValue), to: url)
    }
}
