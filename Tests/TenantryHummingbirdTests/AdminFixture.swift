import Foundation
import HTTPTypes
import HandyShop
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

/// A HandyShop unified database with the catalog and capture installed, the derived tenant schema
/// written as a migration file, and a configuration whose tenant database names are this
/// fixture's own: the admin API over it, tested through Hummingbird's router test client.
struct AdminFixture {
    let url: PostgresURL
    let configuration: TenantryConfiguration
    let directory: String
    static let token = "test-admin-token-0123456789"
    static let logger = TestPostgres.logger

    static func make(shops: Int, rowsPerShop: Int = 40) async throws -> AdminFixture {
        let url = try await TestPostgres.makeDatabase("admin")
        let directory = try CLIRunner.makeDirectory()
        let ddl = try await Database.withConnection(url, logger: logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
            _ = try await HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: 5))
                .generate(on: connection, logger: logger)
            let unified = try await SchemaIntrospector(logger: logger).read(connection)
            return try SchemaDDL.render(try TenantSchemaDeriver().derive(from: unified).schema)
        }
        try FileManager.default.createDirectory(atPath: directory + "/migrations", withIntermediateDirectories: true)
        try ddl.write(toFile: directory + "/migrations/V1__tenant_schema.sql", atomically: true, encoding: .utf8)
        var configuration = TenantryConfiguration()
        configuration.databaseURL = url
        configuration.keyring = Keyring(current: .generate())
        configuration.migrationsDirectory = directory + "/migrations"
        configuration.naming.databaseTemplate = "\(url.database)_{id}_db"
        configuration.naming.roleTemplate = "\(url.database)_u_{id}"
        configuration.naming.templateDatabase = "\(url.database)_tpl"
        try await Catalog.withCatalog(url, logger: logger) { _ = try await $0.migrate() }
        _ = try await Capture(unifiedURL: url, logger: logger).install()
        return AdminFixture(url: url, configuration: configuration, directory: directory)
    }

    /// Runs `body` with a client of the admin API (its job runner running).
    func withAPI<T: Sendable>(
        _ body: @escaping @Sendable (any TestClientProtocol, AdminAPI) async throws -> T
    ) async throws -> T {
        let configuration = configuration, directory = directory
        return try await Operations.with(configuration: configuration, databaseURL: url, actor: "test", logger: Self.logger) { operations in
            var settings = AdminAPI.Configuration(token: Self.token)
            settings.archiveDirectory = directory + "/archives"
            let exporter = PrometheusExporter()
            let api = AdminAPI(
                configuration: settings, operations: operations, metrics: exporter,
                monitor: PerformanceMonitor(configuration: .init(configuration.monitor), metricsFactory: exporter.metricsFactory),
                logger: Self.logger)
            let app = Application(router: api.makeRouter(), services: [api.jobs], logger: Self.logger)
            return try await app.test(.router) { client in try await body(client, api) }
        }
    }

    func tenantURL(_ id: String) async throws -> PostgresURL {
        try await TestPostgres.url(database: "\(url.database)_\(id)_db")
    }
}

/// An HTTP answer, decoded.
struct Answer: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var text: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    /// `error.code` of a JSON error.
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
}

extension TestClientProtocol {
    /// Sends a request with the admin token (unless `token` is nil) and a JSON `body`.
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String? = AdminFixture.token, body: String? = nil,
        headers extra: [String: String] = [:]
    ) async throws -> Answer {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        for (name, value) in extra { if let field = HTTPField.Name(name) { headers[field] = value } }
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { response in
            Answer(status: response.status, headers: response.headers, text: String(buffer: response.body))
        }
    }

    /// Polls a job until it ends; returns its last state and every progress seen.
    func awaitJob(_ id: String, timeout: Duration = .seconds(120)) async throws -> (job: [String: Any], seen: [[String: Any]]) {
        let deadline = ContinuousClock.now + timeout
        var seen: [[String: Any]] = []
        while ContinuousClock.now < deadline {
            let answer = try await call(.get, "/api/superadmin/jobs/\(id)")
            try #require(answer.status == .ok, "\(answer.text)")
            let job = answer.json
            if let progress = job["progress"] as? [String: Any] { seen.append(progress) }
            if let state = job["state"] as? String, state == "succeeded" || state == "failed" { return (job, seen) }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("job \(id) did not finish in time")
        return ([:], seen)
    }

    /// Submits a job (expects 202) and waits for it.
    func runJob(_ path: String, body: String? = nil) async throws -> (job: [String: Any], seen: [[String: Any]]) {
        let answer = try await call(.post, "/api/superadmin/migration/\(path)", body: body)
        try #require(answer.status == .accepted, "\(path): \(answer.status) \(answer.text)")
        let id = try #require(answer.json["job"] as? String)
        #expect(answer.headers[.location] == "/api/superadmin/jobs/\(id)")
        return try await awaitJob(id)
    }
}
