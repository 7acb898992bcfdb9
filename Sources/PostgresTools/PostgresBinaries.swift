import Foundation

/// The PostgreSQL server programs of one installation (`initdb`, `pg_ctl`, `pg_dump`, …).
public struct PostgresBinaries: Sendable, Equatable {
    /// The directory that holds `initdb` and `pg_ctl`.
    public var directory: String

    /// Uses the programs in `directory`.
    public init(directory: String) {
        self.directory = directory
    }

    /// The path of a program in this installation (`pg_dump`, `pg_restore`, `psql` …).
    ///
    /// Client programs may live elsewhere on Debian; falls back to `PATH`.
    public func path(of program: String) -> String {
        let local = "\(directory)/\(program)"
        if FileManager.default.isExecutableFile(atPath: local) { return local }
        return ProcessRunner.which(program) ?? local
    }

    /// Finds the server programs: `TENANTRY_PG_BIN` first, then `PATH`, then the newest
    /// `/usr/lib/postgresql/*/bin` (where Debian's `postgresql` package puts them).
    public static func locate(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        libraryRoot: String = "/usr/lib/postgresql"
    ) throws -> PostgresBinaries {
        var candidates: [String] = []
        if let explicit = environment["TENANTRY_PG_BIN"], !explicit.isEmpty {
            guard hasServerPrograms(explicit) else {
                throw EmbeddedPostgresError(
                    code: .binariesNotFound,
                    message: "TENANTRY_PG_BIN=\(explicit) does not contain initdb and pg_ctl")
            }
            return PostgresBinaries(directory: explicit)
        }
        if let initdb = ProcessRunner.which("initdb", path: environment["PATH"]) {
            let resolved = URL(fileURLWithPath: initdb).resolvingSymlinksInPath()
            candidates.append(resolved.deletingLastPathComponent().path)
        }
        let root = libraryRoot
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            candidates.append("\(root)/\(version)/bin")
        }
        if let found = candidates.first(where: hasServerPrograms) {
            return PostgresBinaries(directory: found)
        }
        throw EmbeddedPostgresError(
            code: .binariesNotFound,
            message: "PostgreSQL server programs (initdb, pg_ctl) not found on PATH, in "
                + "/usr/lib/postgresql/*/bin or TENANTRY_PG_BIN; install them with "
                + "'apt-get install postgresql' (Debian/Ubuntu package postgresql)")
    }

    private static func hasServerPrograms(_ directory: String) -> Bool {
        ["initdb", "pg_ctl"].allSatisfy {
            FileManager.default.isExecutableFile(atPath: "\(directory)/\($0)")
        }
    }
}
