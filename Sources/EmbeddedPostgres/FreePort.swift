import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Asks the kernel for a TCP port on 127.0.0.1 that is free right now.
enum FreePort {
    /// Whether `port` on 127.0.0.1 can be bound right now.
    static func isFree(_ port: Int) -> Bool {
        (try? bindPort(port)) != nil
    }

    static func find() throws -> Int {
        try bindPort(0)
    }

    private static func bindPort(_ port: Int) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw portError() }
        defer { close(fd) }
        // Like the server itself: a port whose old connections linger in TIME_WAIT is free.
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw portError() }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw portError() }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func portError() -> EmbeddedPostgresError {
        EmbeddedPostgresError(code: .startFailed, message: "could not find a free TCP port on 127.0.0.1")
    }
}
