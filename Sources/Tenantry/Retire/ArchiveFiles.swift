import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TenantryCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Durable, private files for a retirement archive: directories 0700, files 0600, each file
/// fsynced before it counts, the manifest written to a temporary name, fsynced and renamed, and
/// the directory fsynced after every entry it gained.
enum ArchiveFiles {
    /// Creates `path` (mode 0700; its missing parents with the default mode) and fsyncs its parent.
    static func makeDirectory(_ path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, !FileManager.default.fileExists(atPath: parent) {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        }
        guard mkdir(path, 0o700) == 0 else { throw failure("creating directory", path) }
        guard chmod(path, 0o700) == 0 else { throw failure("setting the mode of", path) }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }

    /// A new file (mode 0600, never an existing one) for writing; ``Writer/finish()`` fsyncs it.
    static func create(_ path: String) throws -> Writer {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw failure("creating", path) }
        guard fchmod(descriptor, 0o600) == 0 else {
            close(descriptor)
            throw failure("setting the mode of", path)
        }
        return Writer(path: path, handle: FileHandle(fileDescriptor: descriptor, closeOnDealloc: true))
    }

    /// Writes `data` to `path` atomically: a temporary file in the same directory, fsynced, then
    /// renamed over `path`, then the directory fsynced. A reader sees the old file or the new one,
    /// complete, never a part.
    static func writeAtomically(_ data: Data, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory as NSString).appendingPathComponent(".\((path as NSString).lastPathComponent).tmp")
        unlink(temporary)
        var writer = try create(temporary)
        do {
            try writer.write(data)
            try writer.finish()
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw failure("renaming into place", path)
        }
        try syncDirectory(directory)
    }

    /// fsyncs a directory, so that the entries created or renamed in it survive a crash.
    static func syncDirectory(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failure("opening directory", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw failure("syncing directory", path) }
    }

    /// fsyncs and closes every one of `writers`, then fsyncs each of `directories` — several at a
    /// time, on threads of their own (an fsync blocks its thread; Swift's cooperative pool has one
    /// per core), so the file system commits them together. Returns when all are durable; throws
    /// the first failure.
    static func finishAll(_ writers: [Writer], directories: [String], threads: Int = 8) async throws {
        enum Item: Sendable { case file(Writer), directory(String) }
        let items = writers.map(Item.file) + directories.map(Item.directory)
        guard !items.isEmpty else { return }
        let width = min(max(threads, 1), items.count)
        let state = NIOLockedValueBox((left: width, failure: (any Error)?.none))
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            for start in 0..<width {
                let thread = Thread {
                    for index in stride(from: start, to: items.count, by: width) {
                        do {
                            switch items[index] {
                            case .file(var writer): try writer.finish()
                            case .directory(let path): try syncDirectory(path)
                            }
                        } catch {
                            state.withLockedValue { if $0.failure == nil { $0.failure = error } }
                        }
                    }
                    let (last, failure) = state.withLockedValue { state -> (Bool, (any Error)?) in
                        state.left -= 1
                        return (state.left == 0, state.failure)
                    }
                    guard last else { return }
                    if let failure { continuation.resume(throwing: failure) } else { continuation.resume() }
                }
                thread.start()
            }
        }
    }

    /// An archive file being written.
    struct Writer: Sendable {
        let path: String
        let handle: FileHandle
        private var isOpen = true

        init(path: String, handle: FileHandle) {
            self.path = path
            self.handle = handle
        }

        func write(_ data: Data) throws {
            try handle.write(contentsOf: data)
        }

        func write(_ buffer: ByteBuffer) throws {
            try handle.write(contentsOf: Array(buffer: buffer))
        }

        /// fsyncs and closes the file.
        mutating func finish() throws {
            guard isOpen else { return }
            isOpen = false
            try handle.synchronize()
            try handle.close()
        }
    }

    private static func failure(_ what: String, _ path: String) -> TenantryError {
        TenantryError(code: .invalidArgument, message: "archive: \(what) \(path) failed: \(String(cString: strerror(errno)))")
    }
}
