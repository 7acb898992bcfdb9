import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import TenantryCore

extension CopyOutSession {
    /// A connected socket and the end of its TLS negotiation.
    struct Connection: Sendable {
        /// The channel; with TLS, `NIOSSLClientHandler` sits in front of its async handlers.
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        /// Succeeds when the StartupMessage may go (TLS established, or plain text where the URL
        /// allows it); fails with the negotiation's error.
        let negotiation: EventLoopFuture<Void>

        /// Waits for ``negotiation``; its failure as one ``TenantryError`` without the password.
        func negotiated(_ url: PostgresURL, context: String) async throws {
            do {
                try await negotiation.get()
            } catch let error as TenantryError {
                throw error
            } catch {
                throw TenantryError(
                    code: .connectionFailed,
                    message: "copy: TLS with \(context) failed (sslmode=\(url.tls.rawValue)): \(error)", underlying: error)
            }
        }
    }

    /// Opens a socket to `url` (named `context` in errors). Over TCP with an `sslmode` other than
    /// `disable`, the channel first negotiates TLS (``TLSNegotiation``) with the settings the main
    /// connections use (``PostgresURL/tlsConfiguration()``); a unix socket never uses TLS.
    static func connect(_ url: PostgresURL, context: String) async throws -> Connection {
        let tls: (NIOSSLContext, String?)?
        if url.isUnixSocket || url.tls == .disable {
            tls = nil
        } else {
            do {
                tls = (try NIOSSLContext(configuration: url.tlsConfiguration()), serverHostname(url.host))
            } catch {
                throw TenantryError(
                    code: .connectionFailed,
                    message: "copy: the TLS settings for \(context) (sslmode=\(url.tls.rawValue)) cannot be used: \(error)",
                    underlying: error)
            }
        }
        let mode = url.tls
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Connection> = { channel in
            channel.eventLoop.makeCompletedFuture {
                var negotiation = channel.eventLoop.makeSucceededVoidFuture()
                if case let (sslContext, hostname)? = tls {
                    // Before the async channel's handlers: the SSLRequest and its answer never reach them.
                    let promise = channel.eventLoop.makePromise(of: Void.self)
                    try channel.pipeline.syncOperations.addHandler(TLSNegotiation(
                        mode: mode, sslContext: sslContext, serverHostname: hostname, server: context, promise: promise))
                    negotiation = promise.futureResult
                }
                return Connection(
                    channel: try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel),
                    negotiation: negotiation)
            }
        }
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(10))
        do {
            return url.isUnixSocket
                ? try await bootstrap.connect(unixDomainSocketPath: "\(url.host)/.s.PGSQL.\(url.port)", channelInitializer: initializer)
                : try await bootstrap.connect(host: url.host, port: url.port, channelInitializer: initializer)
        } catch {
            throw TenantryError(code: .connectionFailed, message: "copy: cannot connect to \(context): \(error)")
        }
    }

    /// The name to send for SNI and to check the certificate against: the host when it is a
    /// name; nil for an IP address (not valid in SNI; NIOSSL then checks the address itself), as
    /// PostgresNIO does.
    static func serverHostname(_ host: String) -> String? {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }
}

/// PostgreSQL's TLS negotiation at the start of a connection, as libpq and PostgresNIO do it: on
/// `channelActive` it sends an SSLRequest and reads the server's one-byte answer. `S`: it puts a
/// `NIOSSLClientHandler` in front of itself and, once the handshake completed, succeeds `promise`
/// and leaves the pipeline. `N`: for `sslmode=prefer` it succeeds at once (plain text); for
/// `require`, `verify-ca` and `verify-full` it fails, as the main connections do. Bytes after the
/// answer are refused (CVE-2021-23222: a man in the middle could inject them before TLS). A
/// handshake error (a certificate that does not verify) fails `promise`; nothing falls back to
/// plain text.
final class TLSNegotiation: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case connecting, requested, handshaking, done }

    private var state = State.connecting
    private let mode: PostgresURL.TLSMode
    private let sslContext: NIOSSLContext
    private let serverHostname: String?
    private let server: String
    private let promise: EventLoopPromise<Void>

    init(mode: PostgresURL.TLSMode, sslContext: NIOSSLContext, serverHostname: String?, server: String, promise: EventLoopPromise<Void>) {
        self.mode = mode
        self.sslContext = sslContext
        self.serverHostname = serverHostname
        self.server = server
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendRequest(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendRequest(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .requested else { return context.fireChannelRead(data) }
        var bytes = unwrapInboundIn(data)
        guard let answer = bytes.readInteger(as: UInt8.self) else { return }
        guard bytes.readableBytes == 0 else {
            return refuse(context, "sent data right after its answer to the TLS request (refused: it could come from a man in the middle)")
        }
        switch answer {
        case UInt8(ascii: "S"):
            state = .handshaking
            do {
                let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                try context.pipeline.syncOperations.addHandler(handler, position: .before(self))
            } catch {
                fail(context, error)
            }
        case UInt8(ascii: "N") where mode == .prefer:
            finish(context)
        case UInt8(ascii: "N"):
            refuse(context, "does not support TLS, and the URL's sslmode=\(mode.rawValue) requires it")
        default:
            refuse(context, "answered the TLS request with an unexpected byte \(answer)")
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if state == .handshaking, let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            finish(context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if state != .done {
            state = .done
            promise.fail(error)
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state != .done {
            state = .done
            promise.fail(TenantryError(code: .connectionFailed, message: "copy: \(server) closed the connection during the TLS negotiation"))
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if state != .done {
            state = .done
            promise.fail(TenantryError(code: .connectionFailed, message: "copy: the TLS negotiation with \(server) was cut short"))
        }
    }

    private func sendRequest(_ context: ChannelHandlerContext) {
        guard state == .connecting else { return }
        state = .requested
        var request = context.channel.allocator.buffer(capacity: 8)
        request.writeMultipleIntegers(Int32(8), Int32(80_877_103))
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
    }

    /// The StartupMessage may go: this handler leaves the pipeline.
    private func finish(_ context: ChannelHandlerContext) {
        state = .done
        promise.succeed()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refuse(_ context: ChannelHandlerContext, _ problem: String) {
        fail(context, TenantryError(code: .connectionFailed, message: "copy: \(server) \(problem)"))
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        state = .done
        promise.fail(error)
        context.close(promise: nil)
    }
}
