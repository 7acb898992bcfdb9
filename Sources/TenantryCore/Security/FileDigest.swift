import Crypto
import Foundation

/// Digests of files, read in blocks (a backup dump can be large).
public enum FileDigest {
    /// The SHA-256 of the file at `path` (lowercase hex) and its size, read in 1 MiB blocks.
    public static func sha256(of path: String) throws -> (hex: String, bytes: Int64) {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw TenantryError(code: .invalidArgument, message: "cannot read \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var bytes: Int64 = 0
        while let block = try handle.read(upToCount: 1 << 20), !block.isEmpty {
            hasher.update(data: block)
            bytes += Int64(block.count)
        }
        return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), bytes)
    }
}
