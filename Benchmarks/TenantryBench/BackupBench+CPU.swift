import Foundation
import PostgresNIO
import Tenantry

/// CPU time spent by a contestant, in three places: this process (`self`: Tenantry's own work,
/// the anchor's loop), its child processes (`pg_dump`, `pg_restore`: reaped, so counted by
/// `RUSAGE_CHILDREN`) and the PostgreSQL server (the postmaster and its reaped backends, from
/// `/proc/<postmaster>/stat`). On a machine shared with other work, wall time varies with the
/// load; CPU time much less, and it bounds what parallelism can gain on this many cores.
struct CPUTime: Sendable {
    var own = 0.0
    var children = 0.0
    var server = 0.0

    var total: Double { own + children + server }

    static func - (lhs: CPUTime, rhs: CPUTime) -> CPUTime {
        CPUTime(own: lhs.own - rhs.own, children: lhs.children - rhs.children, server: lhs.server - rhs.server)
    }

    /// Now, with the server's postmaster `pid` (nil: server CPU not counted).
    static func now(server pid: Int?) -> CPUTime {
        CPUTime(own: usage(children: false), children: usage(children: true), server: pid.map(processTree) ?? 0)
    }

    private static func usage(children: Bool) -> Double {
        var usage = rusage()
        #if os(Linux)
        _ = getrusage(__rusage_who_t(truncatingIfNeeded: (children ? RUSAGE_CHILDREN : RUSAGE_SELF).rawValue), &usage)
        #else
        _ = getrusage(children ? RUSAGE_CHILDREN : RUSAGE_SELF, &usage)
        #endif
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    /// utime + stime + cutime + cstime of process `pid` (Linux; 0 elsewhere), seconds.
    private static func processTree(_ pid: Int) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        // Fields after "pid (comm)": state is field 3; utime, stime, cutime, cstime are fields 14-17.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 15 else { return 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return fields[11...14].compactMap { Double($0) }.reduce(0, +) / ticks
    }

    /// Milliseconds per tenant of each place, and the total.
    func perTenant(_ tenants: Int) -> [String: any Sendable] {
        let scale = 1000 / Double(max(tenants, 1))
        return [
            "own": Bench.round(own * scale, 1), "children": Bench.round(children * scale, 1),
            "server": Bench.round(server * scale, 1), "total": Bench.round(total * scale, 1),
        ]
    }
}

extension BackupFleet {
    /// The postmaster's pid (first line of `postmaster.pid` in the server's data directory).
    func postmasterPID() async throws -> Int? {
        let data = try await Database.withConnection(bed.admin, logger: Bench.logger) { connection in
            try await connection.query("SELECT current_setting('data_directory')", logger: Bench.logger)
                .decode(String.self).first { _ in true } ?? ""
        }
        guard let text = try? String(contentsOfFile: "\(data)/postmaster.pid", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// The 1-minute load average (other work on the machine), or -1.
    static func loadAverage() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
              let first = text.split(separator: " ").first, let value = Double(first) else { return -1 }
        return value
    }
}
