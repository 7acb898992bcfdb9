import Foundation
import TenantryCore

extension RebalancePlanner {
    /// The fleet while a plan is made: tenants are reassigned as moves are planned.
    struct State {
        let servers: [Server]
        var tenants: [Tenant]
        var moved: Set<TenantID> = []
        var moves: [Move] = []
        var unresolved: [String] = []
        /// Each server's bytes and connections, kept current as moves are planned.
        var totals: [String: (bytes: Int64, connections: Int)] = [:]

        /// The servers that accept tenants and are not draining.
        let members: [Server]
        /// Fills are shares of byte budgets when every member has one.
        let fillIsOfBudget: Bool

        init(servers: [Server], tenants: [Tenant]) {
            self.servers = servers
            members = servers.filter { $0.acceptsTenants && !$0.draining }
            fillIsOfBudget = !members.isEmpty && members.allSatisfy { $0.maxBytes != nil }
            let names = Set(servers.map(\.name))
            self.tenants = tenants.filter { names.contains($0.server) }
            for tenant in self.tenants {
                let total = totals[tenant.server] ?? (0, 0)
                totals[tenant.server] = (total.bytes + tenant.bytes, total.connections + tenant.connections)
            }
        }

        func bytes(on server: String) -> Int64 { totals[server]?.bytes ?? 0 }
        func connections(on server: String) -> Int { totals[server]?.connections ?? 0 }

        /// The weight that divides a member's bytes into its fill.
        func weight(_ server: Server) -> Double { fillIsOfBudget ? Double(server.maxBytes ?? 1) : 1 }

        /// `server`'s fill if it held `bytes`.
        func fill(_ server: Server, bytes: Int64) -> Double {
            if fillIsOfBudget { return Double(bytes) / weight(server) }
            var total: Int64 = 0
            for member in members { total += self.bytes(on: member.name) }
            return total == 0 ? 0 : Double(bytes) / Double(total)
        }

        /// Whether `tenant` may go to `target`: a member other than its own that stays within
        /// its byte budget and connection cap.
        func fits(_ tenant: Tenant, on target: Server) -> Bool {
            guard target.acceptsTenants, !target.draining, target.name != tenant.server else { return false }
            if let budget = target.maxBytes, bytes(on: target.name) + tenant.bytes > budget { return false }
            return connections(on: target.name) + tenant.connections <= target.maxConnections
        }

        /// The member that `tenant` fits on with the lowest fill afterwards (ties: fewer
        /// connections, then the name).
        func bestTarget(for tenant: Tenant) -> Server? {
            members.filter { fits(tenant, on: $0) }.min { a, b in
                let fa = fill(a, bytes: bytes(on: a.name) + tenant.bytes), fb = fill(b, bytes: bytes(on: b.name) + tenant.bytes)
                return (fa, connections(on: a.name), a.name) < (fb, connections(on: b.name), b.name)
            }
        }

        /// The weighted variance of the members' fills (0: perfectly even), as if `moving` bytes
        /// went from server `from` to server `to` (a trial move).
        func imbalance(moving: Int64 = 0, from: String = "", to: String = "") -> Double {
            func load(_ name: String) -> Double {
                Double(bytes(on: name) + (name == from ? -moving : 0) + (name == to ? moving : 0))
            }
            var (total, bytesTotal) = (0.0, 0.0)
            for member in members {
                total += weight(member)
                bytesTotal += load(member.name)
            }
            guard total > 0 else { return 0 }
            let mean = bytesTotal / total
            var sum = 0.0
            for member in members {
                let weight = weight(member)
                let deviation = load(member.name) / weight - mean
                sum += weight * deviation * deviation
            }
            return sum / total
        }

        mutating func move(_ tenant: Tenant, to target: Server, reason: String) {
            guard let index = tenants.firstIndex(where: { $0.id == tenant.id }) else { return }
            moves.append(Move(tenant: tenant.id, from: tenant.server, to: target.name, bytes: tenant.bytes, reason: reason))
            let (from, to) = (totals[tenant.server] ?? (0, 0), totals[target.name] ?? (0, 0))
            totals[tenant.server] = (from.bytes - tenant.bytes, from.connections - tenant.connections)
            totals[target.name] = (to.bytes + tenant.bytes, to.connections + tenant.connections)
            tenants[index].server = target.name
            moved.insert(tenant.id)
        }

        /// Moves every tenant off the draining servers, largest first.
        mutating func drain() {
            for server in servers where server.draining {
                let leaving = tenants.filter { $0.server == server.name }.sorted { ($1.bytes, $0.id) < ($0.bytes, $1.id) }
                for tenant in leaving {
                    if let pinned = tenant.pinned {
                        unresolved.append("tenant \(tenant.id) cannot leave draining server \(server.name): \(pinned)")
                    } else if let target = bestTarget(for: tenant) {
                        move(tenant, to: target, reason: "server \(server.name) is draining")
                    } else {
                        unresolved.append(
                            "no server has room for tenant \(tenant.id) (\(ByteSize.format(tenant.bytes)), "
                                + "\(tenant.connections) connection(s)) leaving draining server \(server.name)")
                    }
                }
            }
        }

        /// Brings every server under its byte budget and connection cap where others have room.
        mutating func relieve() {
            for server in servers where !server.draining {
                while true {
                    let bytesOver = server.maxBytes.map { bytes(on: server.name) - $0 } ?? 0
                    let connectionsOver = connections(on: server.name) - server.maxConnections
                    guard bytesOver > 0 || connectionsOver > 0 else { break }
                    let reason = bytesOver > 0
                        ? "server \(server.name) is over its byte budget (\(ByteSize.format(bytes(on: server.name))) of "
                            + "\(ByteSize.format(server.maxBytes ?? 0)))"
                        : "server \(server.name) is over its connection cap (\(connections(on: server.name)) of \(server.maxConnections))"
                    let candidates = tenants.filter {
                        $0.server == server.name && $0.pinned == nil && !moved.contains($0.id) && bestTarget(for: $0) != nil
                    }
                    let size: (Tenant) -> Int64 = { bytesOver > 0 ? $0.bytes : Int64($0.connections) }
                    let over = bytesOver > 0 ? bytesOver : Int64(connectionsOver)
                    let enough = candidates.filter { size($0) >= over }.min { (size($0), $0.id) < (size($1), $1.id) }
                    guard let tenant = enough ?? candidates.max(by: { (size($0), $1.id) < (size($1), $0.id) }),
                          let target = bestTarget(for: tenant) else {
                        unresolved.append("\(reason): no tenant on it fits on another server")
                        break
                    }
                    move(tenant, to: target, reason: reason)
                }
            }
        }

        /// Evens the members' fills (see ``RebalancePlanner``).
        mutating func even(_ options: Options) {
            var count = 0
            while count < options.maxMoves {
                guard members.count > 1 else { return }
                let fills = members.map { fill($0, bytes: bytes(on: $0.name)) }
                guard let high = fills.max(), let low = fills.min(), high - low > options.evenTolerance else { return }
                let current = imbalance()
                var best: (value: Double, tenant: Tenant, target: Server)?
                for tenant in tenants where tenant.pinned == nil && !moved.contains(tenant.id) {
                    guard let source = members.first(where: { $0.name == tenant.server }) else { continue }
                    let sourceFill = fill(source, bytes: bytes(on: source.name))
                    for target in members where fits(tenant, on: target) {
                        // The pair's gap must narrow; a move that overshoots (the source ends emptier than
                        // the target) must at least halve it, or it only swaps which one is full.
                        let targetFill = fill(target, bytes: bytes(on: target.name))
                        let sourceAfter = fill(source, bytes: bytes(on: source.name) - tenant.bytes)
                        let targetAfter = fill(target, bytes: bytes(on: target.name) + tenant.bytes)
                        let (gapBefore, gapAfter) = (sourceFill - targetFill, abs(sourceAfter - targetAfter))
                        guard gapAfter < gapBefore, sourceAfter >= targetAfter || gapAfter <= gapBefore / 2 else { continue }
                        let value = imbalance(moving: tenant.bytes, from: source.name, to: target.name)
                        if value < best?.value ?? .infinity { best = (value, tenant, target) }
                    }
                }
                guard let best, current - best.value >= options.minimumGain * current, current > 0,
                      let source = members.first(where: { $0.name == best.tenant.server }) else { return }
                let (moving, target) = (best.tenant.bytes, best.target)
                let percent = { (fill: Double) in "\(Int((fill * 100).rounded()))%" }
                let reason = "evens bytes: \(source.name) \(percent(fill(source, bytes: bytes(on: source.name)))) → "
                    + "\(percent(fill(source, bytes: bytes(on: source.name) - moving))), \(target.name) "
                    + "\(percent(fill(target, bytes: bytes(on: target.name)))) → "
                    + "\(percent(fill(target, bytes: bytes(on: target.name) + moving)))"
                    + (fillIsOfBudget ? " of their byte budgets" : " of the bytes")
                move(best.tenant, to: best.target, reason: reason)
                count += 1
            }
        }

        /// Each server's totals now.
        func figures() -> [String: Load] {
            var result: [String: Load] = [:]
            let memberNames = Set(members.map(\.name))
            for server in servers {
                let here = tenants.filter { $0.server == server.name }
                let bytes = here.reduce(Int64(0)) { $0 + $1.bytes }
                result[server.name] = Load(
                    tenants: here.count, bytes: bytes, connections: here.reduce(0) { $0 + $1.connections },
                    queriesPerSecond: here.reduce(0) { $0 + $1.queriesPerSecond },
                    fill: memberNames.contains(server.name) ? fill(server, bytes: bytes) : nil)
            }
            return result
        }
    }
}
