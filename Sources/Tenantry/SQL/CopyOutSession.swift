import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TenantryCore

/// A minimal PostgreSQL frontend for the one thing PostgresNIO cannot do: `COPY … TO STDOUT`.
/// The server then writes each row as COPY text in C (what `psql` streams), and the copier hands
/// the bytes on to the target's `COPY … FROM STDIN` untouched: no SQL escaping on the source, no
/// per-row decoding here.
///
/// It speaks the simple-query protocol only and authenticates with trust or SCRAM-SHA-256 (the
/// server's signature checked). Over TCP it negotiates TLS as libpq and PostgresNIO do, with the
/// URL's `sslmode` read as the main connections read it (``TLSNegotiation``, ``PostgresURL/tlsConfiguration()``):
/// `prefer` encrypts when the server offers TLS and goes on in plain text when it does not;
/// `require`, `verify-ca` and `verify-full` fail without TLS, the last two also when the server's
/// certificate does not verify (an error, never a fall back to plain text); `disable` and a unix
/// socket send no TLS request. A server that asks for another authentication method gets
/// ``Unsupported``, and the copier reads with SELECT as before. The session sets `DateStyle` ISO
/// and `IntervalStyle` postgres, which every server reads back unambiguously, and
/// `extra_float_digits` 3 (exact floats), as `pg_dump` does.
///
/// One task uses a session at a time (the copier opens it and hands it to its reading task), hence
/// `@unchecked Sendable`.
final class CopyOutSession: @unchecked Sendable {
    /// The server asks for something this frontend does not do (an authentication method other
    /// than trust and SCRAM-SHA-256).
    struct Unsupported: Error, CustomStringConvertible {
        var description: String
    }

    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var buffer = ByteBuffer()
    private let context: String

    private init(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, context: String
    ) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.context = context
    }

    /// Connects to `url`, authenticates, runs `body` and closes the connection.
    static func with<Result: Sendable>(
        _ url: PostgresURL, applicationName: String = "tenantry-copy", _ body: (CopyOutSession) async throws -> Result
    ) async throws -> Result {
        let context = "\(url.host):\(url.port)/\(url.database)"
        let connection = try await connect(url, context: context)
        return try await connection.channel.executeThenClose { inbound, outbound in
            try await connection.negotiated(url, context: context)
            let session = CopyOutSession(inbound: inbound, outbound: outbound, context: context)
            try await session.start(url, applicationName: applicationName)
            let result = try await body(session)
            try? await session.send(type: UInt8(ascii: "X")) { _ in }
            return result
        }
    }

    /// Runs `sql` (one or more statements) and waits until the server is ready again; rows are dropped.
    func execute(_ sql: String) async throws {
        try await sendQuery(sql)
        try await drainUntilReady()
    }

    /// Runs `sql`, a `COPY … TO STDOUT` in text format, and hands its data to `consume` in chunks of
    /// about `chunkSize` bytes (whole rows), with the rows so far; returns the rows.
    func copyOut(_ sql: String, chunkSize: Int = 1 << 18, _ consume: (ByteBuffer, Int) async throws -> Void) async throws -> Int {
        try await sendQuery(sql)
        var chunk = ByteBufferAllocator().buffer(capacity: chunkSize + (1 << 14))
        var rows = 0
        var failure: (any Error)?
        while true {
            let (type, body) = try await nextMessage()
            switch type {
            case UInt8(ascii: "d"):
                var data = body
                chunk.writeBuffer(&data)
                rows += 1
                if chunk.readableBytes >= chunkSize {
                    try await consume(chunk, rows)
                    chunk = ByteBufferAllocator().buffer(capacity: chunkSize + (1 << 14))
                }
            case UInt8(ascii: "H"):
                guard body.getInteger(at: body.readerIndex, as: UInt8.self) == 0 else {
                    throw TenantryError(code: .database, message: "copy: \(context) answered COPY TO in binary, not text")
                }
            case UInt8(ascii: "E"):
                failure = Self.serverError(body)
            case UInt8(ascii: "Z"):
                if let failure { throw failure }
                if chunk.readableBytes > 0 { try await consume(chunk, rows) }
                return rows
            default:
                continue
            }
        }
    }

    // MARK: - Protocol

    private func start(_ url: PostgresURL, applicationName: String) async throws {
        var startup = ByteBuffer()
        startup.writeInteger(Int32(0))
        startup.writeInteger(Int32(196_608))
        for (key, value) in [("user", url.user), ("database", url.database), ("application_name", applicationName),
                             ("DateStyle", "ISO"), ("IntervalStyle", "postgres"), ("extra_float_digits", "3")] {
            startup.writeNullTerminatedString(key)
            startup.writeNullTerminatedString(value)
        }
        startup.writeInteger(UInt8(0))
        startup.setInteger(Int32(startup.readableBytes), at: 0)
        try await outbound.write(startup)
        var scram: SCRAM?
        while true {
            var (type, body) = try await nextMessage()
            switch type {
            case UInt8(ascii: "R"):
                guard let code = body.readInteger(as: Int32.self) else { throw protocolError("authentication message") }
                switch code {
                case 0:
                    continue
                case 10:
                    var mechanisms: [String] = []
                    while let name = body.readNullTerminatedString(), !name.isEmpty { mechanisms.append(name) }
                    guard mechanisms.contains("SCRAM-SHA-256"), let password = url.password else {
                        throw Unsupported(description: "the server asks for SASL \(mechanisms.joined(separator: ", "))")
                    }
                    let exchange = SCRAM(password: password)
                    scram = exchange
                    try await send(type: UInt8(ascii: "p")) { message in
                        message.writeNullTerminatedString("SCRAM-SHA-256")
                        message.writeInteger(Int32(exchange.clientFirst.utf8.count))
                        message.writeString(exchange.clientFirst)
                    }
                case 11:
                    guard var exchange = scram, let serverFirst = body.readString(length: body.readableBytes),
                          let clientFinal = exchange.clientFinal(serverFirst: serverFirst) else {
                        throw TenantryError(code: .connectionFailed, message: "copy: \(context) sent an invalid SCRAM challenge")
                    }
                    scram = exchange
                    try await send(type: UInt8(ascii: "p")) { $0.writeString(clientFinal) }
                case 12:
                    guard let exchange = scram, let serverFinal = body.readString(length: body.readableBytes),
                          exchange.verifies(serverFinal: serverFinal) else {
                        throw TenantryError(code: .connectionFailed, message: "copy: \(context) failed to prove it knows the password (SCRAM server signature)")
                    }
                default:
                    throw Unsupported(description: "the server asks for authentication method \(code)")
                }
            case UInt8(ascii: "E"):
                throw Self.serverError(body)
            case UInt8(ascii: "Z"):
                return
            default:
                continue
            }
        }
    }

    private func sendQuery(_ sql: String) async throws {
        try await send(type: UInt8(ascii: "Q")) { $0.writeNullTerminatedString(sql) }
    }

    private func drainUntilReady() async throws {
        var failure: (any Error)?
        while true {
            let (type, body) = try await nextMessage()
            if type == UInt8(ascii: "E") { failure = Self.serverError(body) }
            if type == UInt8(ascii: "Z") {
                if let failure { throw failure }
                return
            }
        }
    }

    private func send(type: UInt8, _ write: (inout ByteBuffer) -> Void) async throws {
        var message = ByteBuffer()
        message.writeInteger(type)
        message.writeInteger(Int32(0))
        write(&message)
        message.setInteger(Int32(message.readableBytes - 1), at: 1)
        try await outbound.write(message)
    }

    /// The next message: its type and body (a slice of the read buffer; consume it before the next call).
    private func nextMessage() async throws -> (UInt8, ByteBuffer) {
        while true {
            if buffer.readableBytes >= 5, let length = buffer.getInteger(at: buffer.readerIndex + 1, as: Int32.self) {
                guard length >= 4 else { throw protocolError("message length \(length)") }
                if buffer.readableBytes >= 1 + Int(length) {
                    let type = buffer.readInteger(as: UInt8.self)!
                    buffer.moveReaderIndex(forwardBy: 4)
                    return (type, buffer.readSlice(length: Int(length) - 4)!)
                }
            }
            try await readMore()
        }
    }

    private func readMore() async throws {
        guard var more = try await inbound.next() else {
            throw TenantryError(code: .connectionFailed, message: "copy: \(context) closed the connection")
        }
        if buffer.readableBytes == 0 {
            buffer = more
        } else {
            buffer.discardReadBytes()
            buffer.writeBuffer(&more)
        }
    }

    private func protocolError(_ what: String) -> TenantryError {
        TenantryError(code: .database, message: "copy: \(context) sent an unexpected \(what)")
    }

    /// An error the server reported.
    struct ServerError: Error, CustomStringConvertible {
        /// Its SQLSTATE.
        var sqlState: String
        /// Its message.
        var message: String
        var description: String { "\(message) (SQLSTATE \(sqlState))" }
    }

    /// An ErrorResponse's SQLSTATE and message.
    static func serverError(_ body: ByteBuffer) -> ServerError {
        var body = body
        var fields: [UInt8: String] = [:]
        while let field = body.readInteger(as: UInt8.self), field != 0, let value = body.readNullTerminatedString() {
            fields[field] = value
        }
        return ServerError(sqlState: fields[UInt8(ascii: "C")] ?? "?????", message: fields[UInt8(ascii: "M")] ?? "server error")
    }
}

/// The client side of SCRAM-SHA-256 without channel binding (RFC 5802, RFC 7677), as libpq does
/// it: the user name is left empty (the server takes the startup message's).
struct SCRAM {
    let password: [UInt8]
    let user: String
    let nonce: String
    private(set) var serverSignature: [UInt8] = []

    /// `user` is empty for PostgreSQL; `nonce` is random unless given (for test vectors).
    init(password: String, user: String = "", nonce: String? = nil) {
        self.password = Array(password.utf8)
        self.user = user
        self.nonce = nonce ?? Data((0..<18).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    var clientFirstBare: String { "n=\(user),r=\(nonce)" }
    var clientFirst: String { "n,," + clientFirstBare }

    /// The client's final message for `serverFirst` (nil when it is malformed or its nonce does not
    /// extend ours); remembers the signature the server must answer with.
    mutating func clientFinal(serverFirst: String) -> String? {
        var attributes: [Character: String] = [:]
        for part in serverFirst.split(separator: ",") where part.count >= 2 && part.dropFirst().first == "=" {
            attributes[part.first!] = String(part.dropFirst(2))
        }
        guard let combined = attributes["r"], combined.hasPrefix(nonce), combined.count > nonce.count,
              let saltText = attributes["s"], let salt = Data(base64Encoded: saltText),
              let iterationsText = attributes["i"], let iterations = Int(iterationsText), (1...10_000_000).contains(iterations)
        else { return nil }
        let salted = Self.saltedPassword(password, salt: Array(salt), iterations: iterations)
        let clientKey = Self.hmac(salted, "Client Key")
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(combined)"
        let authMessage = "\(clientFirstBare),\(serverFirst),\(withoutProof)"
        let signature = Self.hmac(storedKey, authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        serverSignature = Self.hmac(Self.hmac(salted, "Server Key"), authMessage)
        return "\(withoutProof),p=\(Data(proof).base64EncodedString())"
    }

    /// Whether the server's final message carries the signature only a holder of the password's
    /// verifier can make.
    func verifies(serverFinal: String) -> Bool {
        guard !serverSignature.isEmpty, serverFinal.hasPrefix("v="),
              let signature = Data(base64Encoded: String(serverFinal.dropFirst(2)).split(separator: ",").first.map(String.init) ?? "")
        else { return false }
        return Array(signature) == serverSignature
    }

    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] { hmac(key, Array(message.utf8)) }

    static func hmac(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    /// Salted passwords derived so far, by salt, iterations and password digest: a role's salt and
    /// iterations stay the same until its password changes, so the key derivation (4,096 HMACs by
    /// default) runs once per role and server, not once per copy. At most 64 are kept.
    private static let derived = NIOLockedValueBox<[String: [UInt8]]>([:])

    /// `Hi(password, salt, iterations)`, from ``derived`` when it was computed before.
    static func saltedPassword(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = "\(Data(salt).base64EncodedString()):\(iterations):\(Data(SHA256.hash(data: password)).base64EncodedString())"
        if let known = derived.withLockedValue({ $0[key] }) { return known }
        let salted = hi(password, salt: salt, iterations: iterations)
        derived.withLockedValue { cache in
            if cache.count >= 64 { cache.removeAll() }
            cache[key] = salted
        }
        return salted
    }

    /// PBKDF2-HMAC-SHA-256 with one block: `Hi` of RFC 5802. The HMAC keyed with the password is
    /// set up once and copied for each iteration.
    static func hi(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let keyed = HMAC<SHA256>(key: SymmetricKey(data: password))
        var mac = keyed
        mac.update(data: salt + [0, 0, 0, 1])
        var block = Array(mac.finalize())
        var result = block
        for _ in 1..<max(iterations, 1) {
            mac = keyed
            mac.update(data: block)
            block = Array(mac.finalize())
            for index in result.indices { result[index] ^= block[index] }
        }
        return result
    }
}
