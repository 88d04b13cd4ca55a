#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import OnceLedgerFormat

/// `Storage` on real files through `Syscalls` (the choke point).
public struct PosixStorage: Storage {
    public init() {}

    public func listDirectory(_ path: String) throws -> [String] {
        try Syscalls.listDirectory(path)
    }

    public func createDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            try Syscalls.mkdir(prefix)
        }
    }

    public func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    public func openFile(_ path: String, mode: FileOpenMode) throws -> any StorageFile {
        let flags: Int32
        switch mode {
        case .readOnly: flags = O_RDONLY
        case .readWrite: flags = O_RDWR
        case .createExclusive: flags = O_RDWR | O_CREAT | O_EXCL
        }
        let (fd, error) = Syscalls.open(path, flags: flags)
        guard fd >= 0 else {
            throw LedgerError(.io, "cannot open: \(Syscalls.errnoText(error))", path: path, errno: error)
        }
        return PosixFile(fd: fd, path: path)
    }

    /// Starts the kernel reading the whole file into the page cache, so a recovery scan
    /// reads the next segment from memory while it checks the current one. The
    /// corresponding C function is `posix_fadvise(POSIX_FADV_WILLNEED)`.
    public func prefetch(_ path: String) {
        Syscalls.adviseWillNeed(path)
    }

    public func rename(_ from: String, to: String) throws {
        try Syscalls.rename(from, to)
    }

    public func removeFile(_ path: String) throws {
        try Syscalls.unlink(path)
    }

    public func synchronizeDirectory(_ path: String) throws {
        let (fd, error) = Syscalls.open(path, flags: O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else {
            throw LedgerError(.io, "cannot open directory: \(Syscalls.errnoText(error))", path: path, errno: error)
        }
        defer { Syscalls.close(fd) }
        try Syscalls.fsync(fd, path: path)
    }

    public func lockDirectory(_ path: String) throws -> any StorageLock {
        let lockPath = Paths.join(path, LedgerFileNames.lock)
        let (fd, error) = Syscalls.open(lockPath, flags: O_RDWR | O_CREAT)
        guard fd >= 0 else {
            throw LedgerError(.io, "cannot open lock file: \(Syscalls.errnoText(error))", path: lockPath, errno: error)
        }
        let lockError = Syscalls.flockExclusive(fd)
        if lockError != 0 {
            var holder: Int32?
            if let bytes = try? Syscalls.pread(fd, path: lockPath, count: 32, offset: 0) {
                let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
                holder = Int32(text)
            }
            Syscalls.close(fd)
            if lockError == EWOULDBLOCK {
                let who = holder.map { "process \($0)" } ?? "another process"
                throw LedgerError(
                    .locked, "the ledger is locked by \(who); close it there first (one writer per directory)",
                    path: path, holderPID: holder)
            }
            throw LedgerError(.io, "cannot lock: \(Syscalls.errnoText(lockError))", path: lockPath, errno: lockError)
        }
        // Record the holder for the next opener's error message. Not fsync'd: the
        // lock itself is the kernel's; the pid is advisory text.
        let pid = Array("\(getpid())\n".utf8)
        do {
            try Syscalls.ftruncate(fd, path: lockPath, size: 0)
            try Syscalls.pwrite(fd, path: lockPath, bytes: pid, offset: 0)
        } catch {
            Syscalls.unlock(fd)
            Syscalls.close(fd)
            throw error
        }
        return PosixLock(fd: fd)
    }
}

final class PosixLock: StorageLock, @unchecked Sendable {
    private var fd: Int32
    init(fd: Int32) { self.fd = fd }
    func unlock() {
        guard fd >= 0 else { return }
        Syscalls.unlock(fd)
        Syscalls.close(fd)
        fd = -1
    }
    deinit { unlock() }
}

/// A file descriptor plus its path (for error messages and fault injection).
/// Used from one thread at a time (the engine's I/O thread); not synchronized.
final class PosixFile: StorageFile, @unchecked Sendable {
    let path: String
    private var fd: Int32

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    private func live() throws -> Int32 {
        guard fd >= 0 else { throw LedgerError(.closed, "file is closed", path: path) }
        return fd
    }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try Syscalls.pread(live(), path: path, count: count, offset: offset)
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try Syscalls.pwrite(live(), path: path, bytes: bytes, offset: offset)
    }

    func synchronizeData() throws { try Syscalls.fdatasync(live(), path: path) }
    func synchronize() throws { try Syscalls.fsync(live(), path: path) }
    func size() throws -> UInt64 { try Syscalls.fileSize(live(), path: path) }
    func truncate(to size: UInt64) throws { try Syscalls.ftruncate(live(), path: path, size: size) }

    func close() {
        guard fd >= 0 else { return }
        Syscalls.close(fd)
        fd = -1
    }

    deinit { close() }
}

extension String {
    func trimmingWhitespace() -> String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
