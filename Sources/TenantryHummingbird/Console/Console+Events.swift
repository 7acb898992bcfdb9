import Foundation
import Hummingbird
import ServiceLifecycle
import Tenantry

extension Console {
    /// `GET /console/events[?tenant=ID | ?job=ID]`: server-sent events. Each message is a JSON
    /// object of the live values (`data-live` keys) that changed since the last one; the first
    /// carries them all. Values come from the shared fleet read (``ConsoleFleetCache``), so the
    /// catalog sees at most one query per second however many pages watch. A stream lasts
    /// ``Configuration/streamLifetime`` (the browser reconnects by itself) and ends at shutdown
    /// or when the session ends.
    func events(_ session: ConsoleSessions.Session, _ request: Request) throws -> Response {
        let scope = EventScope(request)
        let (lifetime, interval) = (configuration.streamLifetime, max(configuration.refreshInterval, 0.2))
        guard sessions.beginStream(request) else {
            throw ConsoleError(.tooManyRequests, "too many live pages open in this session (at most \(ConsoleSessions.streamsPerSession))")
        }
        let sessions = sessions
        let body = ResponseBody { writer in
            defer { sessions.endStream(request) }
            var sent: [String: String] = [:]
            let started = Date()
            var quietSince = Date()
            try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
            while Date().timeIntervalSince(started) < lifetime, !Task.isCancelled, !Task.isShuttingDownGracefully {
                guard sessions.session(for: request, touch: false) != nil else {
                    try await writer.write(ByteBuffer(string: "event: expired\ndata: {}\n\n"))
                    break
                }
                let values: [String: String]
                do {
                    values = try await liveValues(scope)
                } catch {
                    let message = ConsoleHTML.sanitize(AdminError.from(error, bodyLimit: AdminRequestContext.bodyLimit).message)
                    try await writer.write(ByteBuffer(string: "event: problem\ndata: \(Self.json(["error": String(message.prefix(200))]))\n\n"))
                    try await Task.sleep(for: .seconds(interval))
                    continue
                }
                let changed = values.filter { sent[$0.key] != $0.value }
                if !changed.isEmpty {
                    try await writer.write(ByteBuffer(string: "data: \(Self.json(changed))\n\n"))
                    sent.merge(changed) { _, new in new }
                    quietSince = Date()
                } else if Date().timeIntervalSince(quietSince) > 15 {
                    try await writer.write(ByteBuffer(string: ": still here\n\n"))
                    quietSince = Date()
                }
                if case .job = scope, let state = values.first(where: { $0.key.hasSuffix(".state") })?.value,
                   state == AdminJobs.State.succeeded.rawValue || state == AdminJobs.State.failed.rawValue {
                    break
                }
                try await Task.sleep(for: .seconds(interval))
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[.init("X-Accel-Buffering")!] = "no"
        return Response(status: .ok, headers: headers, body: body)
    }

    /// A live channel without a session: it tells the page so (the page goes to the login).
    static func expiredStream() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: "retry: 60000\n\nevent: expired\ndata: {}\n\n")))
    }

    /// The first live message a page gets (every value it shows, as JSON): the fleet's when
    /// `tenant` is nil. What the live channel costs the server per new watcher (the benchmark).
    public func liveMessage(tenant: String? = nil) async throws -> String {
        Self.json(try await liveValues(tenant.map { .tenant($0) } ?? .fleet))
    }

    /// The live values one page shows.
    func liveValues(_ scope: EventScope) async throws -> [String: String] {
        switch scope {
        case .job(let id):
            guard let job = api.jobs.job(id) else { return ["job.\(id).state": "unknown"] }
            return Self.liveValues(job: job)
        case .tenant(let id):
            let prefix = "tenant.\(id)."
            return try await fleetValues().filter { $0.key.hasPrefix(prefix) || $0.key.hasPrefix("relay.") }
        case .fleet:
            // The fleet's values of the shared read, and the jobs' (in memory) as they are now.
            return try await fleetValues().merging(Self.liveValues(jobs: api.jobs.all())) { _, job in job }
        }
    }

    /// The fleet's live values, computed once per fleet read and shared by every stream.
    func fleetValues() async throws -> [String: String] {
        let fleet = try await fleet()
        if let cached = liveCache.withLockedValue({ $0 }), cached.at == fleet.at { return cached.values }
        let values = Self.liveValues(fleet)
        liveCache.withLockedValue { $0 = (fleet.at, values) }
        return values
    }

    static func json(_ values: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(values)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// What a live channel watches.
enum EventScope: Sendable {
    case fleet
    case tenant(String)
    case job(String)

    init(_ request: Request) {
        if let job = request.uri.queryParameters.get("job") {
            self = .job(String(job.prefix(64)))
        } else if let tenant = request.uri.queryParameters.get("tenant") {
            self = .tenant(String(tenant.prefix(64)))
        } else {
            self = .fleet
        }
    }
}
