import EmbeddedPostgres
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// The torture's second server (issue #14): a real PostgreSQL registered as ``TortureWorld/secondServer``
/// with `tenantry servers add`, where `move start` sends tenant databases (and back); the
/// databases of a tenant found where the catalog's placement names them; the checks of a tenant
/// whose server move is active.
extension TortureWorld {
    /// The name the second server is registered under.
    static let secondServer = "second"

    /// Registers `url` as the second server the way an operator does: `tenantry servers add second`
    /// with the admin URL in `TENANTRY_SERVER_URL` (never on the command line).
    static func registerSecond(_ child: TenantryChild, url: PostgresURL) async throws {
        var environment = child.environment
        environment["TENANTRY_SERVER_URL"] = url.urlStringWithPassword
        let registering = TenantryChild(binary: child.binary, environment: environment, directory: child.directory)
        let outcome = try await registering.run(["servers", "add", secondServer, "--max-connections", "200"])
        guard outcome.succeeded else {
            throw TortureError("setup: tenantry servers add \(secondServer) failed (\(outcome.status)): \(outcome.output.suffix(400))")
        }
    }

    /// The admin logins of the default server and every registered one, as the catalog has them.
    static func directory(_ bed: MoveBed, catalog: Catalog, keyring: Keyring) async throws -> ServerDirectory {
        ServerDirectory(
            databaseURL: bed.unifiedURL, superuser: nil, superuserPassword: nil, servers: try await catalog.servers(), keyring: keyring)
    }

    /// The tenant database where the catalog places it (the live one during a server move).
    func databaseURL(_ situation: TortureOperation.Situation) throws -> PostgresURL {
        guard let database = situation.databaseName else { throw TortureError("a tenant without a database name: \(situation)") }
        return try servers.adminURL(server: situation.server, database: database)
    }

    /// The other database of an active server move past its copy (`nil`: none).
    func followerURL(_ situation: TortureOperation.Situation) throws -> PostgresURL? {
        guard let move = situation.serverMove, move.phase == .moving || move.phase == .switched else { return nil }
        return try servers.adminURL(server: move.followerServer, database: move.followerDatabase)
    }

    /// The server an interruption restarts: either one (by `draw`) when the operation is a server
    /// move or the tenant has a database on the second server, else the first (unified's, the
    /// catalog's and most tenants').
    func restartTarget(
        _ operation: TortureOperation, _ situation: TortureOperation.Situation, draw: Double
    ) -> (name: String, server: EmbeddedPostgres)? {
        guard let server else { return nil }
        guard let second else { return (ServerDirectory.defaultServerName, server) }
        let involvesSecond = operation.isServerMove || situation.server == Self.secondServer || situation.serverMove != nil
        return involvesSecond && draw < 0.5 ? (Self.secondServer, second) : (ServerDirectory.defaultServerName, server)
    }

    /// The tenant databases of `tenant` now: where the catalog places it, and the other database
    /// of an active server move. Empty when it is not provisioned.
    func tenantDatabases(_ tenant: TenantID) async throws -> [(name: String, url: PostgresURL)] {
        let situation = try await situation(tenant)
        guard situation.provisioned else { return [] }
        var result = [("tenant database on \(situation.server)", try databaseURL(situation))]
        if let follower = try followerURL(situation), let move = situation.serverMove {
            result.append(("other database on \(move.followerServer)", follower))
        }
        return result
    }

    /// The copies of a shop that must be equal once sync has caught up, compared table by table:
    /// unified and its tenant database while it has two copies; during a server move also unified
    /// and the other database, the two tenant databases with each other, and `tenantry move verify`
    /// (exit 0 only when equal).
    func copyDifferences(_ shop: TenantID, excludingCustomers excluded: [Int64]) async throws -> [String] {
        let situation = try await situation(shop)
        guard situation.provisioned else { return [] }
        let live = TortureCopy(name: "tenant", url: try databaseURL(situation), unified: false)
        let unified = TortureCopy(name: "unified", url: bed.unifiedURL, unified: true)
        let follower = try followerURL(situation).map { TortureCopy(name: "other server", url: $0, unified: false) }
        var result: [String] = []
        if [.syncing, .readsSwitched, .dedicated].contains(situation.phase) {
            result += try await differences(shop, unified, live, excludingCustomers: excluded)
            if let follower { result += try await differences(shop, unified, follower, excludingCustomers: excluded) }
        }
        if let follower {
            result += try await differences(shop, live, follower, excludingCustomers: excluded)
            let outcome = try await child.run(["move", "verify", "--tenant", shop.rawValue, "--timeout", "120"])
            verifiedMoves.withLockedValue { $0 += 1 }
            if !outcome.succeeded {
                result.append("shop \(shop): move verify exit \(outcome.status) (\(situation)): \(outcome.lastLine)")
            }
        }
        return result
    }
}

/// One copy of a shop's rows: unified (filtered by `shop_id`) or a tenant database.
struct TortureCopy: Sendable {
    var name: String
    var url: PostgresURL
    var unified: Bool
}
