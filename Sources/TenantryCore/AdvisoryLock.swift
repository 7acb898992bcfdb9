/// Every advisory-lock key Tenantry takes, in one place.
///
/// Keys use PostgreSQL's two-integer form `(namespace, key)`; the namespace keeps Tenantry's locks
/// apart from the application's own.
public enum AdvisoryLock {
    /// The first integer of every Tenantry advisory lock.
    public static let namespace: Int32 = 0x7E4A_4E54
    /// The first integer of the relay's per-tenant stream locks (`(relayNamespace, tenant(id))`),
    /// apart from the write fence `(namespace, tenant(id))` so applying never blocks writers.
    public static let relayNamespace: Int32 = 0x7E4A_4E55
    /// Held (shared, key 0) by a copy's read-only snapshot session, so that turning capture on for
    /// another tenant does not wait for it: it writes nothing.
    public static let copySnapshotNamespace: Int32 = 0x7E4A_4E56
    /// The first integer of a server-move command's per-tenant lock in the catalog database
    /// (`(serverMoveNamespace, tenant(id))`, held for the whole command): one command at a time per tenant.
    public static let serverMoveNamespace: Int32 = 0x7E4A_4E57
    /// The first integer of a tenant's write fence (`(fenceNamespace, hashtext(id))`, computed by
    /// the server that holds it): capture functions take it shared, cutover and rollback exclusively.
    public static let fenceNamespace: Int32 = 0x7E4A_4E58

    /// Serialises catalog migrations (`tenantry init`).
    public static let catalogMigration: Int32 = 1
    /// Serialises capture installation in the unified database.
    public static let captureInstall: Int32 = 2
    /// Serialises creation of the template database.
    public static let templateMigration: Int32 = 3
    /// Serialises fleet migrations of one database (advisory locks are per database).
    public static let schemaMigration: Int32 = 4
    /// Serialises the choice of a new tenant's server and the recording of it (in the catalog
    /// database, held for one transaction), so concurrent provisions see each other's placements.
    public static let placement: Int32 = 5
    /// Serialises `tenantry guard install` / `uninstall` in the unified database.
    public static let guardInstall: Int32 = 6

    /// The per-tenant key (provisioning, the write fence, moves): a stable 31-bit hash of the id,
    /// with the top bit set so it never collides with the fixed keys above.
    public static func tenant(_ id: TenantID) -> Int32 {
        Int32(bitPattern: UInt32(truncatingIfNeeded: StableHash.fnv1a64(id.rawValue)) | 0x8000_0000)
    }
}

/// A hash that is the same on every machine and every run (unlike `Hasher`).
public enum StableHash {
    /// 64-bit FNV-1a of the UTF-8 bytes of `text`.
    public static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
