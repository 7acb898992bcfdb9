/// The error type of Tenantry: a stable ``Code``, a one-line message that is safe to show a user
/// (never a secret), and context.
public struct TenantryError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong, as a stable code (for the CLI's exit and the admin API's HTTP status).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidTenantID, invalidIdentifier, configuration
            case malformedCiphertext, unknownKey, tamperedCiphertext, wrongCiphertextContext
            case catalogNotInitialized, catalogMigration, catalogNewerThanTool
            case tenantNotFound, database, conflict, invalidArgument, timeout
            case crossTenantChange
            case connectionFailed, tenantMoved
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A tenant id failed validation.
        public static let invalidTenantID = Code(.invalidTenantID)
        /// A SQL identifier (table, column, database name) failed validation.
        public static let invalidIdentifier = Code(.invalidIdentifier)
        /// An environment variable or option has a bad value.
        public static let configuration = Code(.configuration)
        /// A stored ciphertext is not in the `v1:<key-id>:<data>` format.
        public static let malformedCiphertext = Code(.malformedCiphertext)
        /// A ciphertext was sealed with a key that is not configured (the wrong key).
        public static let unknownKey = Code(.unknownKey)
        /// A ciphertext failed authentication: it was altered or corrupted.
        public static let tamperedCiphertext = Code(.tamperedCiphertext)
        /// A ciphertext belongs to another tenant or field.
        public static let wrongCiphertextContext = Code(.wrongCiphertextContext)
        /// The catalog schema does not exist yet: run `tenantry init`.
        public static let catalogNotInitialized = Code(.catalogNotInitialized)
        /// A catalog migration failed.
        public static let catalogMigration = Code(.catalogMigration)
        /// The catalog was migrated by a newer Tenantry.
        public static let catalogNewerThanTool = Code(.catalogNewerThanTool)
        /// The tenant is not in the catalog.
        public static let tenantNotFound = Code(.tenantNotFound)
        /// A database operation failed.
        public static let database = Code(.database)
        /// The operation conflicts with the current state.
        public static let conflict = Code(.conflict)
        /// An argument is out of range or malformed.
        public static let invalidArgument = Code(.invalidArgument)
        /// An operation did not finish in time.
        public static let timeout = Code(.timeout)
        /// A change would have touched a row of another tenant: refused (a dead letter, never an update).
        public static let crossTenantChange = Code(.crossTenantChange)
        /// A database could not be reached, or the connection broke: retrying later may succeed.
        public static let connectionFailed = Code(.connectionFailed)
        /// A write was refused because the tenant has moved to another database (a cutover or a
        /// rollback switched it): it belongs on the tenant's current route.
        public static let tenantMoved = Code(.tenantMoved)

        public var description: String { base.rawValue }
    }

    /// The error's code.
    public var code: Code
    /// A one-line message, safe to print.
    public var message: String
    /// The tenant concerned, if any.
    public var tenant: String?
    /// The table concerned, if any.
    public var table: String?
    /// The underlying error (may hold server detail; shown only in `debugDescription`).
    public var underlying: (any Error)?
    /// Where the error was raised.
    public var file: String
    /// Where the error was raised.
    public var line: Int

    /// Creates an error.
    public init(
        code: Code, message: String, tenant: String? = nil, table: String? = nil,
        underlying: (any Error)? = nil, file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.tenant = tenant
        self.table = table
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String { message }

    public var debugDescription: String {
        var text = "TenantryError(code: \(code), message: \(message)"
        if let tenant { text += ", tenant: \(tenant)" }
        if let table { text += ", table: \(table)" }
        if let underlying { text += ", underlying: \(String(reflecting: underlying))" }
        return text + ", at: \(file):\(line))"
    }
}
