import Foundation
import PostgresNIO
import TenantryCore

/// A measured sample workload for the unified-vs-tenant comparison (`tenantry performance`): the
/// same reads of each tenant's rows, once on the unified database (filtered by the discriminator)
/// and once on the tenant's own database, through the router, so that its
/// ``TenantRouter/Configuration/monitor`` records both sides under the same conditions.
///
/// The tables are those present on both sides: tenant tables of the unified database (they have
/// the discriminator column) that also exist in the first tenant's database, the largest first.
/// Per table there are two reads: `count(*)` of the tenant's rows, and the first 20 of them.
public struct ComparisonWorkload: Sendable {
    /// The tenants (provisioned: each needs a database).
    public var tenants: [TenantID]
    /// How long to run.
    public var duration: Duration
    /// Concurrent workers.
    public var concurrency: Int
    /// The tenant key column of the unified database (`TENANTRY_DISCRIMINATOR`).
    public var discriminator: String
    /// The most tables read.
    public var maxTables: Int = 5

    /// What ran.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenants read.
        public var tenants: [String]
        /// The tables read.
        public var tables: [String]
        /// Queries run on each side.
        public var queriesPerSide: Int
        /// Wall-clock seconds.
        public var seconds: Double
        /// Concurrent workers.
        public var concurrency: Int
    }

    /// A workload over `tenants`.
    public init(tenants: [TenantID], duration: Duration, concurrency: Int = 4, discriminator: String = "shop_id") {
        self.tenants = tenants
        self.duration = duration
        self.concurrency = max(1, concurrency)
        self.discriminator = discriminator
    }

    /// The type names a discriminator may have (the tenant id, sent as text, is cast to it).
    static let discriminatorTypes: Set<String> = ["bigint", "integer", "smallint", "text", "uuid", "numeric"]

    struct Table: Sendable { var name: String; var keyType: String }

    /// Runs the workload through `router` and reports what ran; the figures are in the monitor.
    public func run(_ router: TenantRouter) async throws -> Report {
        guard let first = tenants.first else {
            throw TenantryError(code: .invalidArgument, message: "no tenants to measure")
        }
        let tables = try await commonTables(router, first)
        let reads = try tables.map { table -> (unified: [String], tenant: [String]) in
            let name = try SQLIdentifier.quoted(table.name)
            let filter = "\(try SQLIdentifier.quoted(discriminator)) = CAST($1 AS \(table.keyType))"
            return (["SELECT count(*) FROM \(name) WHERE \(filter)", "SELECT * FROM \(name) WHERE \(filter) LIMIT 20"],
                    ["SELECT count(*) FROM \(name)", "SELECT * FROM \(name) LIMIT 20"])
        }
        let shapes = reads.flatMap { read in zip(read.unified, read.tenant).map { ($0, $1) } }
        let start = ContinuousClock.now
        let deadline = start + duration
        let (tenants, width) = (self.tenants, concurrency)
        let perSide = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<width {
                group.addTask {
                    var step = worker
                    var count = 0
                    while ContinuousClock.now < deadline, !Task.isCancelled {
                        let tenant = tenants[step % tenants.count]
                        let (unified, own) = shapes[(step / tenants.count) % shapes.count]
                        var binds = PostgresBindings()
                        binds.append(tenant.rawValue)
                        let unifiedQuery = PostgresQuery(unsafeSQL: unified, binds: binds)
                        // Alternate which side goes first, so neither profits from the other's warm-up.
                        let order: [Route.Source] = step % 2 == 0 ? [.unified, .tenant] : [.tenant, .unified]
                        for source in order {
                            // Failures are recorded by the monitor (error rate); the run goes on.
                            _ = try? await router.withConnection(tenant: tenant, source: source) { connection in
                                try await connection.query(source == .unified ? unifiedQuery : PostgresQuery(unsafeSQL: own))
                            }
                        }
                        count += 1
                        step += width
                    }
                    return count
                }
            }
            return await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - start
        return Report(
            tenants: tenants.map(\.rawValue), tables: tables.map(\.name), queriesPerSide: perSide,
            seconds: elapsed.totalSeconds,
            concurrency: width)
    }

    /// Tables with the discriminator in unified that exist in `tenant`'s database too. Discovery
    /// runs on the raw connection, so it is not measured.
    func commonTables(_ router: TenantRouter, _ tenant: TenantID) async throws -> [Table] {
        let logger = router.logger
        let discriminator = self.discriminator
        let unified = try await router.withConnection(tenant: tenant, source: .unified) { connection in
            let rows = try await connection.connection.query("""
                SELECT c.relname::text, format_type(a.atttypid, NULL)
                FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attname = \(discriminator) AND NOT a.attisdropped
                ORDER BY c.reltuples DESC, c.relname
                """, logger: logger)
            var tables: [Table] = []
            for try await (name, type) in rows.decode((String, String).self) { tables.append(Table(name: name, keyType: type)) }
            return tables
        }
        let own = try await router.withConnection(tenant: tenant, source: .tenant) { connection in
            let rows = try await connection.connection.query("""
                SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                """, logger: logger)
            var names: Set<String> = []
            for try await name in rows.decode(String.self) { names.insert(name) }
            return names
        }
        let common = unified.filter { own.contains($0.name) && Self.discriminatorTypes.contains($0.keyType) }
        guard !common.isEmpty else {
            throw TenantryError(
                code: .invalidArgument,
                message: "no table with column \(discriminator) in the unified database also exists in tenant \(tenant)'s "
                    + "database: nothing to compare (run 'tenantry schema derive' and provision first)")
        }
        return Array(common.prefix(maxTables))
    }
}
