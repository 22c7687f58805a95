import CPNG
import Foundation
import Tensor

/// PNG reading and writing through libpng's simplified `png_image` API, which reports errors in
/// a message field instead of longjmp (which Swift cannot survive). The only file that imports
/// libpng.
///
/// Reading accepts every PNG colour type and bit depth (1/2/4/8/16-bit gray, gray+alpha,
/// palette, RGB, RGBA, interlaced or not); samples come out as 8 bits. 16-bit files without a
/// gAMA/sRGB chunk are taken as sRGB-encoded (what image tools mean by them), so their values
/// scale linearly to 8 bits rather than being gamma-converted. Writing produces 8-bit gray, RGB
/// or RGBA (gray+alpha too).
public enum PNGCodec {
    /// Channel layout of what `read` returns.
    public enum Mode: Sendable {
        /// One channel. Colour is converted to luminance by libpng (sRGB-aware); alpha is
        /// composited onto `background`.
        case gray
        /// Three channels. Gray is replicated; alpha is composited onto `background`.
        case rgb
        /// The file's own channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (palette -> RGB/RGBA).
        case keep
    }

    /// Largest images we agree to allocate for. Checked before any pixel buffer exists.
    public struct Limits: Sendable {
        public var maxDimension: Int
        public var maxPixels: Int
        public init(maxDimension: Int = 16384, maxPixels: Int = 16384 * 16384) {
            self.maxDimension = maxDimension
            self.maxPixels = maxPixels
        }
    }

    /// Reads a PNG into 8-bit interleaved pixels.
    /// - Parameters:
    ///   - mode: output channels (see `Mode`).
    ///   - background: gray level that transparent pixels are composited onto for `.gray`/`.rgb`.
    /// - Throws: `MediaError` naming the file and the reason for anything the file can cause.
    public static func readPixels(_ url: URL, mode: Mode = .keep, background: UInt8 = 255,
                                  limits: Limits = Limits()) throws -> Pixels {
        let path = url.path
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw MediaError.cannotOpen(file: path, reason: "no readable file at this path")
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&image, path) != 0 else {
            let reason = message(image)
            png_image_free(&image)
            throw MediaError.invalidData(file: path, reason: reason)
        }
        return try finishRead(&image, mode: mode, background: background, limits: limits, name: path)
    }

    /// Decodes a PNG held in memory (a PNG embedded in another file, such as a colour font's
    /// bitmap) into 8-bit interleaved pixels, as `readPixels(_:)` does for a file.
    /// - Parameter name: what errors name, e.g. "NotoColorEmoji.ttf glyph 1234".
    public static func decodePixels(_ bytes: UnsafeRawBufferPointer, name: String, mode: Mode = .keep,
                                    background: UInt8 = 255, limits: Limits = Limits()) throws -> Pixels {
        guard let base = bytes.baseAddress, bytes.count >= 8 else {
            throw MediaError.invalidData(file: name, reason: "\(bytes.count) bytes, too short for a PNG")
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_memory(&image, base, bytes.count) != 0 else {
            let reason = message(image)
            png_image_free(&image)
            throw MediaError.invalidData(file: name, reason: reason)
        }
        return try finishRead(&image, mode: mode, background: background, limits: limits, name: name)
    }

    /// The part of reading after the header: limits, output format, pixels. Frees `image`.
    private static func finishRead(_ image: inout png_image, mode: Mode, background: UInt8, limits: Limits,
                                   name path: String) throws -> Pixels {
        defer { png_image_free(&image) }

        let width = Int(image.width), height = Int(image.height)
        // Header fields are checked before the buffer they size is allocated.
        try MediaLimits.check(width, max: limits.maxDimension, "width", file: path)
        try MediaLimits.check(height, max: limits.maxDimension, "height", file: path)
        try MediaLimits.check(width * height, max: limits.maxPixels, "pixel count", file: path)

        let native = image.format
        let hasAlpha = native & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        let hasColor = native & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        let format: UInt32
        switch mode {
        case .gray: format = UInt32(PNG_FORMAT_GRAY)
        case .rgb: format = UInt32(PNG_FORMAT_RGB)
        case .keep:
            format = (hasColor ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0) | (hasAlpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
        }
        image.format = format
        // begin_read fills `flags` from the file; add ours after it. libpng's default for 16-bit
        // data without gamma information is linear; the tools that write such files mean sRGB.
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        let channels = Int(format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1) + (format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0 ? 1 : 0)
        let byteCount = width * height * channels
        precondition(cpng_image_size(image) == byteCount, "PNGCodec: libpng and we disagree on the buffer size")

        var bytes = [UInt8](repeating: 0, count: byteCount)
        var bg = png_color(red: background, green: background, blue: background)
        let ok = bytes.withUnsafeMutableBytes { buf in
            png_image_finish_read(&image, &bg, buf.baseAddress, Int32(width * channels), nil)
        }
        guard ok != 0 else {
            throw MediaError.invalidData(file: path, reason: message(image))
        }
        return Pixels(width: width, height: height, channels: channels, bytes: bytes)
    }

    /// Whether the PNG holds colour (RGB or a colour palette), from its header alone.
    public static func isColor(_ url: URL) throws -> Bool {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&image, url.path) != 0 else {
            let reason = message(image)
            png_image_free(&image)
            throw MediaError.invalidData(file: url.path, reason: reason)
        }
        defer { png_image_free(&image) }
        return image.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
    }

    /// Reads a PNG into a float tensor [C, H, W] in [-1, 1] (C = 1 for `.gray`, 3 for `.rgb`,
    /// the file's channels for `.keep`).
    public static func read(_ url: URL, mode: Mode = .rgb, background: UInt8 = 255,
                            limits: Limits = Limits()) throws -> Tensor {
        try readPixels(url, mode: mode, background: background, limits: limits).tensor()
    }

    /// Writes a tensor [C, H, W] in [-1, 1] (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as an
    /// 8-bit PNG, atomically. Values are rounded and clipped; NaN becomes black.
    /// `text`: (keyword, text) pairs written as tEXt chunks (iTXt when the text is not ASCII),
    /// such as the `parameters` chunk other tools read a generation's settings from.
    public static func write(_ t: Tensor, to url: URL, text: [(String, String)] = []) throws {
        try write(Pixels(tensor: t), to: url, text: text)
    }

    /// Writes 8-bit pixels as a PNG, atomically (temp file, then rename).
    public static func write(_ pixels: Pixels, to url: URL, text: [(String, String)] = []) throws {
        let path = url.path
        try MediaLimits.check(pixels.width, max: Limits().maxDimension, "width", file: path)
        try MediaLimits.check(pixels.height, max: Limits().maxDimension, "height", file: path)
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(pixels.width)
        image.height = UInt32(pixels.height)
        switch pixels.channels {
        case 1: image.format = UInt32(PNG_FORMAT_GRAY)
        case 2: image.format = UInt32(PNG_FORMAT_GA)
        case 3: image.format = UInt32(PNG_FORMAT_RGB)
        default: image.format = UInt32(PNG_FORMAT_RGB | PNG_FORMAT_FLAG_ALPHA)
        }
        try MediaFile.write(to: url) { temp in
            let ok = pixels.bytes.withUnsafeBytes { buf in
                png_image_write_to_file(&image, temp, 0, buf.baseAddress,
                                        Int32(pixels.width * pixels.channels), nil)
            }
            let reason = message(image)
            png_image_free(&image)
            guard ok != 0 else { throw MediaError.writeFailed(file: path, reason: reason) }
            if !text.isEmpty {
                var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: temp)))
                // After the signature (8 bytes) and IHDR (4 length + 4 type + 13 data + 4 CRC).
                bytes.insert(contentsOf: text.flatMap { textChunk(keyword: $0.0, text: $0.1) }, at: 33)
                try Data(bytes).write(to: URL(fileURLWithPath: temp))
            }
        }
    }

    /// Encodes 8-bit pixels as PNG bytes in memory (for writers that place many files
    /// themselves, e.g. into a folder renamed into place once complete).
    /// - Parameter name: what errors name (the file the bytes are meant for).
    /// - Parameter text: (keyword, text) pairs written as text chunks, as `write` does.
    public static func encode(_ pixels: Pixels, name: String, text: [(String, String)] = []) throws -> [UInt8] {
        try MediaLimits.check(pixels.width, max: Limits().maxDimension, "width", file: name)
        try MediaLimits.check(pixels.height, max: Limits().maxDimension, "height", file: name)
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(pixels.width)
        image.height = UInt32(pixels.height)
        switch pixels.channels {
        case 1: image.format = UInt32(PNG_FORMAT_GRAY)
        case 2: image.format = UInt32(PNG_FORMAT_GA)
        case 3: image.format = UInt32(PNG_FORMAT_RGB)
        default: image.format = UInt32(PNG_FORMAT_RGB | PNG_FORMAT_FLAG_ALPHA)
        }
        defer { png_image_free(&image) }
        let stride = Int32(pixels.width * pixels.channels)
        // First call sizes the output (memory nil), the second fills it.
        var size = 0
        let sized = pixels.bytes.withUnsafeBytes { buf in
            png_image_write_to_memory(&image, nil, &size, 0, buf.baseAddress, stride, nil)
        }
        guard sized != 0, size > 0 else { throw MediaError.writeFailed(file: name, reason: message(image)) }
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { dst in
            pixels.bytes.withUnsafeBytes { buf in
                png_image_write_to_memory(&image, dst.baseAddress, &size, 0, buf.baseAddress, stride, nil)
            }
        }
        guard ok != 0 else { throw MediaError.writeFailed(file: name, reason: message(image)) }
        var bytes = Array(out.prefix(size))
        // After the signature (8 bytes) and IHDR (4 length + 4 type + 13 data + 4 CRC).
        if !text.isEmpty { bytes.insert(contentsOf: text.flatMap { textChunk(keyword: $0.0, text: $0.1) }, at: 33) }
        return bytes
    }

    /// A tEXt chunk (Latin-1 keyword of 1–79 characters; ASCII text), or an iTXt chunk (UTF-8 text).
    static func textChunk(keyword: String, text: String) -> [UInt8] {
        let key = Array(keyword.unicodeScalars.filter { $0.value >= 32 && $0.value < 127 }.prefix(79).map { UInt8($0.value) })
        let ascii = text.unicodeScalars.allSatisfy { $0.value < 127 && ($0.value >= 32 || $0 == "\n") }
        let type: [UInt8] = Array((ascii ? "tEXt" : "iTXt").utf8)
        // iTXt: keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0, UTF-8 text
        let data = ascii ? key + [0] + Array(text.utf8) : key + [0, 0, 0, 0, 0] + Array(text.utf8)
        let n = UInt32(data.count)
        let length: [UInt8] = [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
        let crc = crc32(type + data)
        return length + type + data + [UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8(crc & 0xFF)]
    }

    /// The PNG chunk CRC (ISO 3309, polynomial 0xEDB88320).
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    /// The tEXt and iTXt chunks of a PNG file as (keyword, text) pairs.
    public static func textChunks(_ url: URL) throws -> [(String, String)] {
        let bytes = [UInt8](try Data(contentsOf: url))
        var out: [(String, String)] = []
        var i = 8
        while i + 12 <= bytes.count {
            let n = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            guard n >= 0, i + 12 + n <= bytes.count else { break }
            let type = String(decoding: bytes[(i + 4)..<(i + 8)], as: UTF8.self)
            let data = Array(bytes[(i + 8)..<(i + 8 + n)])
            if type == "tEXt" || type == "iTXt", let z = data.firstIndex(of: 0) {
                let key = String(decoding: data[..<z], as: UTF8.self)
                var rest = Array(data[(z + 1)...])
                if type == "iTXt" {  // flag, method, language\0, translated\0
                    rest = Array(rest.dropFirst(2))
                    for _ in 0..<2 { if let e = rest.firstIndex(of: 0) { rest = Array(rest[(e + 1)...]) } }
                }
                out.append((key, String(decoding: rest, as: UTF8.self)))
            }
            i += 12 + n
        }
        return out
    }

    /// libpng's error text: a NUL-terminated char[64] that imports as a tuple.
    private static func message(_ image: png_image) -> String {
        var m = image.message
        let text = withUnsafeBytes(of: &m) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return text.isEmpty ? "libpng reported an error" : text
    }
}
