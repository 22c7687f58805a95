import NIOCore

/// Notices a client that goes away while its request is being answered, so that its job can be
/// cancelled. Hummingbird accepts connections with `allowRemoteHalfClosure`: when a client closes
/// its socket (curl killed, a browser tab closed, a script's timeout) the server reads end-of-file,
/// NIO fires `ChannelEvent.inputClosed` and keeps the channel open for our answer, so
/// `channel.closeFuture` fires only after the answer is written, which for a queued job is after
/// it ran. Like nginx (its 499), we take end-of-input during a request as the client giving up;
/// a reset connection arrives as `channelInactive`. One per connection, after the HTTP decoder
/// (Hummingbird's `additionalChannelHandlers`); everything here runs on the channel's event loop.
final class HangUpHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any

    private var gone = false
    private var watchers: [ObjectIdentifier: () -> Void] = [:]

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.fireChannelRead(data) }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { hungUp() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        hungUp()
        context.fireChannelInactive()
    }

    private func hungUp() {
        gone = true
        let w = watchers
        watchers = [:]
        w.values.forEach { $0() }
    }

    final class Token: Sendable {}

    /// Calls `onHangUp` (on `channel`'s event loop, at most once) when its client goes away, at
    /// once if it already has; the function returned stops watching (call it when the answer is ready).
    static func watch(_ channel: any Channel, _ onHangUp: @escaping @Sendable () -> Void) -> @Sendable () -> Void {
        let token = Token()
        channel.eventLoop.execute {
            guard let handler = try? channel.pipeline.syncOperations.handler(type: HangUpHandler.self) else {
                // The pipeline is torn down only once the connection closed.
                if !channel.isActive { onHangUp() }
                return
            }
            if handler.gone { onHangUp() } else { handler.watchers[ObjectIdentifier(token)] = onHangUp }
        }
        return {
            channel.eventLoop.execute {
                (try? channel.pipeline.syncOperations.handler(type: HangUpHandler.self))?.watchers[ObjectIdentifier(token)] = nil
            }
        }
    }
}
