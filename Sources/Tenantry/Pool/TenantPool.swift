import PostgresNIO

/// One server's multi-tenant pool of PostgresNIO connections (``ConnectionPool`` over
/// `PostgresConnection`); the router keeps one per server.
public typealias TenantPool = ConnectionPool<PostgresConnection>
