/// An error from starting, stopping or locating an embedded PostgreSQL server.
///
/// `description` is one line that is safe to show a user; it never holds the superuser password.
public struct EmbeddedPostgresError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, as a stable code.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case binariesNotFound, initdbFailed, startFailed, stopFailed, commandFailed
            case directoryNotAccessible, alreadyRunning, notRunning
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// `initdb` or `pg_ctl` could not be found.
        public static let binariesNotFound = Code(.binariesNotFound)
        /// `initdb` failed.
        public static let initdbFailed = Code(.initdbFailed)
        /// The server did not start or did not become ready in time.
        public static let startFailed = Code(.startFailed)
        /// The server did not stop.
        public static let stopFailed = Code(.stopFailed)
        /// An external program could not be run.
        public static let commandFailed = Code(.commandFailed)
        /// The data directory cannot be used by the OS user that runs the server.
        public static let directoryNotAccessible = Code(.directoryNotAccessible)
        /// A server already runs on this data directory and could not be attached.
        public static let alreadyRunning = Code(.alreadyRunning)
        /// The server is not running.
        public static let notRunning = Code(.notRunning)

        public var description: String { base.rawValue }
    }

    /// The error's code.
    public var code: Code
    /// A one-line explanation, safe to print.
    public var message: String
    /// The tail of the server log or program output, for `debugDescription`.
    public var details: String?

    /// Creates an error.
    public init(code: Code, message: String, details: String? = nil) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { message }
}
