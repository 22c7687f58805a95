import CFFmpeg
import Foundation
import Tensor
import Media

/// The only file that imports FFmpeg. It moves 8-bit interleaved frames ([F, H, W, C] bytes,
/// C = 1 gray or 3 RGB) in and out of files; tensors, padding and palettes live elsewhere.
/// Every FFmpeg object is owned by a final class whose deinit frees it, so a thrown error
/// leaks nothing.
enum FFmpeg {
    /// Frames as bytes: `frameCount` frames of `height` rows of `width` pixels of `channels`.
    struct Frames {
        var width: Int
        var height: Int
        var channels: Int
        var fps: Double
        var frameCount: Int
        var bytes: [UInt8]
    }

    struct DecodeRequest {
        var fps: Double?
        var width: Int?
        var height: Int?
        var gray: Bool
        var maxFrames: Int?
        var limits: VideoCodec.Limits
    }

    enum Container { case mp4, gif }

    struct EncodeRequest {
        var container: Container
        var crf: Int
        var preset: String
        var encoder: VideoCodec.Encoder
    }

    /// FFmpeg prints to stderr by default; the codecs report through thrown errors instead.
    static let silence: Void = { av_log_set_level(AV_LOG_QUIET) }()

    static func describe(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 128)
        if av_strerror(code, &buf, buf.count) < 0 { return "FFmpeg error \(code)" }
        return String(cString: buf)
    }

    // MARK: Decoding

    static func decode(path: String, _ req: DecodeRequest) throws -> Frames {
        _ = silence
        let d = try Demuxer(path: path, limits: req.limits)
        return try d.run(req)
    }

    private final class Demuxer {
        let path: String
        var fmt: UnsafeMutablePointer<AVFormatContext>?
        var ctx: UnsafeMutablePointer<AVCodecContext>?
        var pkt: UnsafeMutablePointer<AVPacket>?
        var frame: UnsafeMutablePointer<AVFrame>?
        var sws: OpaquePointer?
        // Every stored property has a value before the first `throw`: Swift runs deinit (and so
        // frees the FFmpeg objects) only for a fully initialised object.
        var streamIndex: Int32 = -1
        var timeBase = 0.0
        var nativeFPS = 25.0
        let limits: VideoCodec.Limits

        init(path: String, limits: VideoCodec.Limits) throws {
            self.path = path
            self.limits = limits
            var f: UnsafeMutablePointer<AVFormatContext>? = nil
            let r = avformat_open_input(&f, path, nil, nil)
            guard r >= 0, let f else {
                throw MediaError.invalidData(file: path, reason: "not a media file FFmpeg can open: \(FFmpeg.describe(r))")
            }
            fmt = f
            // Cap how much find_stream_info may read from a hostile file.
            f.pointee.probesize = 32 << 20
            f.pointee.max_analyze_duration = 10 * Int64(AV_TIME_BASE)
            // Dimensions the container header already states are checked before anything is
            // decoded, and the decoders find_stream_info opens to probe a stream refuse frames
            // larger than the limits allow (`max_pixels`): a GIF that claims 65535×65535 is
            // refused, not allocated (fuzzing found the memory it took and kept: issue 21).
            let streamCount = Int(f.pointee.nb_streams)
            for i in 0..<streamCount {
                guard let st = f.pointee.streams[i], let par = st.pointee.codecpar,
                      par.pointee.codec_type == AVMEDIA_TYPE_VIDEO else { continue }
                // (0 until probed in some containers: only an upper bound here)
                if par.pointee.width > 0 { try MediaLimits.check(Int(par.pointee.width), max: limits.maxDimension, "width", file: path) }
                if par.pointee.height > 0 { try MediaLimits.check(Int(par.pointee.height), max: limits.maxDimension, "height", file: path) }
            }
            let maxPixels = "\(limits.maxDimension * limits.maxDimension)"
            var probeOptions = [OpaquePointer?](repeating: nil, count: streamCount)
            for i in 0..<streamCount { av_dict_set(&probeOptions[i], "max_pixels", maxPixels, 0) }
            defer { for i in 0..<streamCount { av_dict_free(&probeOptions[i]) } }
            let s = streamCount == 0 ? avformat_find_stream_info(f, nil)
                : probeOptions.withUnsafeMutableBufferPointer { avformat_find_stream_info(f, $0.baseAddress) }
            guard s >= 0 else {
                throw MediaError.invalidData(file: path, reason: "cannot read stream information: \(FFmpeg.describe(s))")
            }
            var codec: UnsafePointer<AVCodec>? = nil
            let idx = av_find_best_stream(f, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0)
            guard idx >= 0, idx < Int32(f.pointee.nb_streams), let codec, let stream = f.pointee.streams[Int(idx)] else {
                if idx == cffmpeg_averror_decoder_not_found() {
                    throw MediaError.unsupported(file: path, reason: "no decoder for its video codec")
                }
                throw MediaError.unsupported(file: path, reason: "no video stream")
            }
            streamIndex = idx
            let par = stream.pointee.codecpar!
            // Header dimensions are checked before any decoder allocates from them.
            try MediaLimits.check(Int(par.pointee.width), max: limits.maxDimension, "width", file: path)
            try MediaLimits.check(Int(par.pointee.height), max: limits.maxDimension, "height", file: path)
            let tb = stream.pointee.time_base
            timeBase = tb.den > 0 && tb.num > 0 ? av_q2d(tb) : 0
            let rates = [stream.pointee.avg_frame_rate, stream.pointee.r_frame_rate]
            let rate = rates.first { $0.num > 0 && $0.den > 0 && av_q2d($0) <= 1000 }
            nativeFPS = rate.map { av_q2d($0) } ?? 25

            guard let c = avcodec_alloc_context3(codec) else {
                throw MediaError.invalidData(file: path, reason: "cannot allocate a decoder")
            }
            ctx = c
            guard avcodec_parameters_to_context(c, par) >= 0 else {
                throw MediaError.invalidData(file: path, reason: "bad codec parameters")
            }
            c.pointee.thread_count = 1
            c.pointee.max_pixels = Int64(limits.maxDimension * limits.maxDimension)
            let o = avcodec_open2(c, codec, nil)
            guard o >= 0 else {
                throw MediaError.unsupported(file: path, reason: "cannot open the \(String(cString: codec.pointee.name)) decoder: \(FFmpeg.describe(o))")
            }
            pkt = av_packet_alloc()
            frame = av_frame_alloc()
            guard pkt != nil, frame != nil else {
                throw MediaError.invalidData(file: path, reason: "out of memory")
            }
        }

        deinit {
            sws_freeContext(sws)
            av_frame_free(&frame)
            av_packet_free(&pkt)
            avcodec_free_context(&ctx)
            avformat_close_input(&fmt)
        }

        func run(_ req: DecodeRequest) throws -> Frames {
            let ctx = ctx!, pkt = pkt!, frame = frame!
            var out = Frames(width: 0, height: 0, channels: req.gray ? 1 : 3,
                             fps: req.fps ?? nativeFPS, frameCount: 0, bytes: [])
            var pending: [UInt8] = []      // the last converted frame, [H, W, C]
            var pendingTime = 0.0
            var startTime: Double? = nil
            var decoded = 0
            var lastColor: (Int32, Int32, Int32) = (-1, -1, -1)
            var done = false
            let cap = req.maxFrames ?? Int.max

            // Appends `pending` to the output for every output slot that starts before `until`.
            func emit(until: Double) throws {
                guard let fps = req.fps, let t0 = startTime else {
                    try append()
                    return
                }
                while !done {
                    let slot = t0 + Double(out.frameCount) / fps
                    guard slot < until - 1e-9 else { break }
                    try append()
                }
            }
            func append() throws {
                guard out.frameCount < cap else { done = true; return }
                guard out.frameCount < limits.maxFrames else {
                    throw MediaError.limitExceeded(file: path, reason: "more than \(limits.maxFrames) frames; pass maxFrames to read a prefix")
                }
                guard out.bytes.count + pending.count <= limits.maxBytes else {
                    throw MediaError.limitExceeded(file: path, reason: "decoded frames exceed \(MemoryBudget.describe(Double(limits.maxBytes))) (5 bytes a pixel with their float copy: a fifth of the memory budget at most)")
                }
                out.bytes.append(contentsOf: pending)
                out.frameCount += 1
                if out.frameCount >= cap { done = true }
            }

            func receiveAll() throws {
                while !done {
                    let r = avcodec_receive_frame(ctx, frame)
                    if r == cffmpeg_averror(EAGAIN) || r == cffmpeg_averror_eof() { return }
                    guard r >= 0 else {
                        throw MediaError.invalidData(file: path, reason: "decoding failed: \(FFmpeg.describe(r))")
                    }
                    defer { av_frame_unref(frame) }
                    let fw = Int(frame.pointee.width), fh = Int(frame.pointee.height)
                    try MediaLimits.check(fw, max: limits.maxDimension, "frame width", file: path)
                    try MediaLimits.check(fh, max: limits.maxDimension, "frame height", file: path)
                    if out.width == 0 {
                        (out.width, out.height) = VideoCodec.outputSize(sourceWidth: fw, sourceHeight: fh,
                                                                        width: req.width, height: req.height)
                        try MediaLimits.check(out.width, max: limits.maxDimension, "output width", file: path)
                        try MediaLimits.check(out.height, max: limits.maxDimension, "output height", file: path)
                        pending = [UInt8](repeating: 0, count: out.width * out.height * out.channels)
                    }
                    let ts = frame.pointee.best_effort_timestamp
                    let t = ts != cffmpeg_nopts_value() && timeBase > 0 ? Double(ts) * timeBase : Double(decoded) / nativeFPS
                    if startTime == nil {
                        startTime = t
                    } else {
                        try emit(until: t)
                    }
                    if done { return }
                    try convert(frame, into: &pending, width: out.width, height: out.height,
                                gray: req.gray, lastColor: &lastColor)
                    pendingTime = t
                    decoded += 1
                }
            }

            while !done {
                let r = av_read_frame(fmt, pkt)
                if r == cffmpeg_averror_eof() { break }
                guard r >= 0 else {
                    throw MediaError.invalidData(file: path, reason: "reading failed (truncated?): \(FFmpeg.describe(r))")
                }
                defer { av_packet_unref(pkt) }
                guard pkt.pointee.stream_index == streamIndex else { continue }
                if pkt.pointee.flags & AV_PKT_FLAG_CORRUPT != 0 {
                    throw MediaError.invalidData(file: path, reason: "truncated or corrupt packet at frame \(decoded)")
                }
                let s = avcodec_send_packet(ctx, pkt)
                guard s >= 0 || s == cffmpeg_averror(EAGAIN) else {
                    throw MediaError.invalidData(file: path, reason: "corrupt video data at frame \(decoded): \(FFmpeg.describe(s))")
                }
                try receiveAll()
            }
            if !done {
                _ = avcodec_send_packet(ctx, nil)   // flush delayed frames
                try receiveAll()
            }
            guard decoded > 0 else {
                throw MediaError.invalidData(file: path, reason: "no decodable video frames")
            }
            if !done {
                // The last frame lasts one native frame period.
                try emit(until: pendingTime + 1 / nativeFPS)
            }
            return out
        }

        /// Any decoded frame -> [H, W, C] bytes at the output size, RGB24 or GRAY8, honouring the
        /// frame's YUV matrix and range.
        private func convert(_ frame: UnsafeMutablePointer<AVFrame>, into buffer: inout [UInt8], width: Int, height: Int,
                             gray: Bool, lastColor: inout (Int32, Int32, Int32)) throws {
            let srcFormat = AVPixelFormat(rawValue: frame.pointee.format)
            sws = sws_getCachedContext(sws, frame.pointee.width, frame.pointee.height, srcFormat,
                                       Int32(width), Int32(height), gray ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24,
                                       SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nil, nil, nil)
            guard let sws else {
                throw MediaError.unsupported(file: path, reason: "cannot convert pixel format \(frame.pointee.format)")
            }
            let jpegFormats: Set<Int32> = [AV_PIX_FMT_YUVJ420P.rawValue, AV_PIX_FMT_YUVJ422P.rawValue, AV_PIX_FMT_YUVJ444P.rawValue]
            let srcRange: Int32 = frame.pointee.color_range == AVCOL_RANGE_JPEG || jpegFormats.contains(frame.pointee.format) ? 1 : 0
            let color = (Int32(frame.pointee.colorspace.rawValue), srcRange, frame.pointee.format)
            if color != lastColor {
                // Fails harmlessly (returns -1) for RGB and palette sources.
                _ = sws_setColorspaceDetails(sws, sws_getCoefficients(color.0), srcRange,
                                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16)
                lastColor = color
            }
            var data = frame.pointee.data
            var lines = frame.pointee.linesize
            let channels = gray ? 1 : 3
            let h = buffer.withUnsafeMutableBufferPointer { buf -> Int32 in
                var dst: [UnsafeMutablePointer<UInt8>?] = [buf.baseAddress, nil, nil, nil]
                var dstStride: [Int32] = [Int32(width * channels), 0, 0, 0]
                return withUnsafePointer(to: &data) { dp in
                    dp.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src in
                        withUnsafePointer(to: &lines) { lp in
                            lp.withMemoryRebound(to: Int32.self, capacity: 8) { ls in
                                sws_scale(sws, src, ls, 0, frame.pointee.height, &dst, &dstStride)
                            }
                        }
                    }
                }
            }
            guard h == Int32(height) else {
                throw MediaError.invalidData(file: path, reason: "pixel conversion failed")
            }
        }
    }

    // MARK: Encoding

    /// Encodes `frames` (even width and height for MP4) to `path`; returns the encoder's name.
    static func encode(path: String, file: String, frames: Frames, _ req: EncodeRequest) throws -> String {
        _ = silence
        let m = try Muxer(path: path, file: file, frames: frames, req)
        try m.run(frames)
        return m.encoderName
    }

    private final class Muxer {
        let file: String
        var oc: UnsafeMutablePointer<AVFormatContext>?
        var ctx: UnsafeMutablePointer<AVCodecContext>?
        var pkt: UnsafeMutablePointer<AVPacket>?
        var frame: UnsafeMutablePointer<AVFrame>?
        var sws: OpaquePointer?
        // Defaults so that the object is fully initialised before the first `throw` (see Demuxer).
        var stream: UnsafeMutablePointer<AVStream>?
        var encoderName = ""
        let container: Container

        init(path: String, file: String, frames: Frames, _ req: EncodeRequest) throws {
            self.file = file
            container = req.container
            var o: UnsafeMutablePointer<AVFormatContext>? = nil
            let muxer = req.container == .mp4 ? "mp4" : "gif"
            guard avformat_alloc_output_context2(&o, nil, muxer, path) >= 0, let o else {
                throw MediaError.unsupported(file: file, reason: "FFmpeg has no \(muxer) muxer")
            }
            oc = o
            let codec: UnsafePointer<AVCodec>?
            switch (req.container, req.encoder) {
            case (.gif, _): codec = avcodec_find_encoder(AV_CODEC_ID_GIF)
            case (.mp4, .h264): codec = avcodec_find_encoder_by_name("libx264")
            case (.mp4, .mpeg4): codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4)
            case (.mp4, .auto):
                codec = avcodec_find_encoder_by_name("libx264") ?? avcodec_find_encoder(AV_CODEC_ID_MPEG4)
            }
            guard let codec else {
                throw MediaError.unsupported(file: file, reason: "no \(req.encoder) encoder in this FFmpeg build")
            }
            encoderName = String(cString: codec.pointee.name)
            guard let st = avformat_new_stream(o, nil), let c = avcodec_alloc_context3(codec) else {
                throw MediaError.writeFailed(file: file, reason: "out of memory")
            }
            stream = st
            ctx = c
            c.pointee.width = Int32(frames.width)
            c.pointee.height = Int32(frames.height)
            let q = av_d2q(frames.fps, 1_001_000)
            c.pointee.time_base = AVRational(num: q.den, den: q.num)
            c.pointee.framerate = q
            c.pointee.thread_count = 0
            switch req.container {
            case .gif:
                c.pointee.pix_fmt = frames.channels == 1 ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_PAL8
            case .mp4:
                c.pointee.pix_fmt = AV_PIX_FMT_YUV420P
                c.pointee.gop_size = 60
                // BT.601 limited range, said explicitly so that players do not guess.
                c.pointee.colorspace = AVCOL_SPC_SMPTE170M
                c.pointee.color_primaries = AVCOL_PRI_SMPTE170M
                c.pointee.color_trc = AVCOL_TRC_SMPTE170M
                c.pointee.color_range = AVCOL_RANGE_MPEG
                if encoderName.hasPrefix("libx264") {
                    av_opt_set(c.pointee.priv_data, "crf", "\(req.crf)", 0)
                    av_opt_set(c.pointee.priv_data, "preset", req.preset, 0)
                } else {
                    // MPEG-4 Part 2 has no crf: a fixed quantiser, roughly crf / 6 (crf 18 -> q 3).
                    c.pointee.flags |= AV_CODEC_FLAG_QSCALE
                    c.pointee.global_quality = Int32(FF_QP2LAMBDA) * Int32(max(1, min(31, (req.crf + 3) / 6)))
                }
            }
            if o.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER != 0 {
                c.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
            }
            let r = avcodec_open2(c, codec, nil)
            guard r >= 0 else {
                throw MediaError.unsupported(file: file, reason: "cannot open encoder \(encoderName) at \(frames.width)x\(frames.height): \(FFmpeg.describe(r))")
            }
            guard avcodec_parameters_from_context(st.pointee.codecpar, c) >= 0 else {
                throw MediaError.writeFailed(file: file, reason: "cannot set stream parameters")
            }
            st.pointee.time_base = c.pointee.time_base
            st.pointee.avg_frame_rate = q
            let a = avio_open(&o.pointee.pb, path, AVIO_FLAG_WRITE)
            guard a >= 0 else {
                throw MediaError.writeFailed(file: file, reason: "cannot create the file: \(FFmpeg.describe(a))")
            }
            var opts: OpaquePointer? = nil
            if req.container == .mp4 {
                // moov before mdat: playback (and browsers) can start before the whole file arrives.
                av_dict_set(&opts, "movflags", "+faststart", 0)
            }
            let h = avformat_write_header(o, &opts)
            av_dict_free(&opts)
            guard h >= 0 else {
                throw MediaError.writeFailed(file: file, reason: "cannot write the header: \(FFmpeg.describe(h))")
            }
            pkt = av_packet_alloc()
            frame = av_frame_alloc()
            guard let frame, pkt != nil else { throw MediaError.writeFailed(file: file, reason: "out of memory") }
            frame.pointee.format = c.pointee.pix_fmt.rawValue
            frame.pointee.width = c.pointee.width
            frame.pointee.height = c.pointee.height
            guard av_frame_get_buffer(frame, 0) >= 0 else {
                throw MediaError.writeFailed(file: file, reason: "out of memory")
            }
        }

        deinit {
            sws_freeContext(sws)
            av_frame_free(&frame)
            av_packet_free(&pkt)
            avcodec_free_context(&ctx)
            if let oc {
                if oc.pointee.pb != nil { avio_closep(&oc.pointee.pb) }
                avformat_free_context(oc)
            }
        }

        func run(_ frames: Frames) throws {
            let ctx = ctx!, frame = frame!
            let (w, h, c) = (frames.width, frames.height, frames.channels)
            let frameBytes = w * h * c
            if ctx.pointee.pix_fmt == AV_PIX_FMT_YUV420P {
                sws = sws_getContext(Int32(w), Int32(h), c == 1 ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24,
                                     Int32(w), Int32(h), AV_PIX_FMT_YUV420P,
                                     SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, nil, nil, nil)
                guard let sws else { throw MediaError.writeFailed(file: file, reason: "no RGB -> YUV converter") }
                _ = sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_DEFAULT), 1,
                                             sws_getCoefficients(SWS_CS_SMPTE170M), 0, 0, 1 << 16, 1 << 16)
            }
            for i in 0..<frames.frameCount {
                guard av_frame_make_writable(frame) >= 0 else {
                    throw MediaError.writeFailed(file: file, reason: "out of memory")
                }
                try frames.bytes.withUnsafeBufferPointer { all in
                    let src = all.baseAddress! + i * frameBytes
                    try fill(frame, from: src, width: w, height: h, channels: c)
                }
                frame.pointee.pts = Int64(i)
                try send(frame)
            }
            try send(nil)
            let t = av_write_trailer(oc)
            guard t >= 0 else { throw MediaError.writeFailed(file: file, reason: "cannot finish the file: \(FFmpeg.describe(t))") }
            let closed = avio_closep(&oc!.pointee.pb)
            guard closed >= 0 else { throw MediaError.writeFailed(file: file, reason: "close failed: \(FFmpeg.describe(closed))") }
        }

        /// [H, W, C] bytes -> the encoder's frame (YUV 4:2:0 for MP4; gray or palette for GIF).
        private func fill(_ frame: UnsafeMutablePointer<AVFrame>, from src: UnsafePointer<UInt8>,
                          width w: Int, height h: Int, channels c: Int) throws {
            if let sws {
                var srcPtrs: [UnsafePointer<UInt8>?] = [src, nil, nil, nil]
                var srcStride: [Int32] = [Int32(w * c), 0, 0, 0]
                var data = frame.pointee.data
                var lines = frame.pointee.linesize
                let r = withUnsafePointer(to: &data) { dp in
                    dp.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 8) { dst in
                        withUnsafePointer(to: &lines) { lp in
                            lp.withMemoryRebound(to: Int32.self, capacity: 8) { ls in
                                sws_scale(sws, &srcPtrs, &srcStride, 0, Int32(h), dst, ls)
                            }
                        }
                    }
                }
                guard r == Int32(h) else { throw MediaError.writeFailed(file: file, reason: "pixel conversion failed") }
                return
            }
            let stride = Int(frame.pointee.linesize.0)
            guard let plane = frame.pointee.data.0 else { throw MediaError.writeFailed(file: file, reason: "no frame buffer") }
            if c == 1 {
                for y in 0..<h { (plane + y * stride).update(from: src + y * w, count: w) }
            } else {
                // PAL8: indices in plane 0, 256 ARGB entries in plane 1.
                guard let pal = frame.pointee.data.1 else { throw MediaError.writeFailed(file: file, reason: "no palette buffer") }
                let colors = GIFPalette.colors
                pal.withMemoryRebound(to: UInt32.self, capacity: 256) { p in
                    for k in 0..<256 { p[k] = k < colors.count ? colors[k] : 0xFF00_0000 }
                }
                GIFPalette.indices(rgb: src, width: w, height: h, into: plane, stride: stride)
            }
        }

        private func send(_ frame: UnsafeMutablePointer<AVFrame>?) throws {
            let ctx = ctx!, pkt = pkt!
            let s = avcodec_send_frame(ctx, frame)
            guard s >= 0 else { throw MediaError.writeFailed(file: file, reason: "encoding failed: \(FFmpeg.describe(s))") }
            while true {
                let r = avcodec_receive_packet(ctx, pkt)
                if r == cffmpeg_averror(EAGAIN) || r == cffmpeg_averror_eof() { return }
                guard r >= 0 else { throw MediaError.writeFailed(file: file, reason: "encoding failed: \(FFmpeg.describe(r))") }
                // Without a duration the MP4 edit list drops the last frame.
                if pkt.pointee.duration == 0 { pkt.pointee.duration = 1 }
                let stream = stream!
                av_packet_rescale_ts(pkt, ctx.pointee.time_base, stream.pointee.time_base)
                pkt.pointee.stream_index = stream.pointee.index
                let w = av_interleaved_write_frame(oc, pkt)
                guard w >= 0 else { throw MediaError.writeFailed(file: file, reason: "muxing failed: \(FFmpeg.describe(w))") }
            }
        }
    }
}
