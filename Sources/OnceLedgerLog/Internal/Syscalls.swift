#if !os(Linux)
#error("OnceLedger supports Linux (glibc) only: its storage engine makes Linux system calls (fdatasync, pwritev2 with RWF_DSYNC, flock on the ledger directory, O_DIRECTORY) through Glibc.")
#endif
import Glibc
import COnceSupport
import OnceLedgerFormat
import Synchronization

/// The one choke point for every system call OnceLedger makes on real files
/// (after swift-system's `Syscalls.swift`). EINTR is retried here and only here;
/// short writes are continued here; tests inject faults here (`FaultInjection`).
enum Syscalls {
    static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) -> (fd: Int32, errno: Int32) {
        while true {
            if let fault = FaultInjection.check(.open, path: path) {
                if fault == EINTR { continue }
                return (-1, fault)
            }
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return (fd, 0) }
            let error = Glibc.errno
            if error == EINTR { continue }
            return (-1, error)
        }
    }

    /// Opens a file of the ledger: never through a symbolic link (`O_NOFOLLOW`), and
    /// never blocking on a FIFO or device (`O_NONBLOCK` for the open, cleared after it).
    /// Then `fstat` checks that it is a regular file. A symbolic link (ELOOP), a
    /// directory (EISDIR), a FIFO, socket or device throws `.notARegularFile` naming the
    /// path and what it is; any other failure throws `.io` with its errno.
    static func openRegularFile(_ path: String, flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        let (fd, error) = open(path, flags: flags | O_NOFOLLOW | O_NONBLOCK, mode: mode)
        guard fd >= 0 else {
            if error == ELOOP { throw notRegular(path, kind: "a symbolic link", errno: error) }
            if error == EISDIR { throw notRegular(path, kind: "a directory", errno: error) }
            throw LedgerError(.io, "cannot open: \(errnoText(error))", path: path, errno: error)
        }
        var info = stat()
        if fstat(fd, &info) != 0 {
            let error = Glibc.errno
            close(fd)
            throw LedgerError(.io, "cannot stat: \(errnoText(error))", path: path, errno: error)
        }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG else {
            close(fd)
            throw notRegular(path, kind: fileTypeName(type))
        }
        // Regular files ignore O_NONBLOCK; cleared anyway so the descriptor is an ordinary one.
        let status = fcntl(fd, F_GETFL)
        if status >= 0 { _ = fcntl(fd, F_SETFL, status & ~O_NONBLOCK) }
        return fd
    }

    /// What a file type of `st_mode & S_IFMT` is called in messages.
    static func fileTypeName(_ type: mode_t) -> String {
        switch type {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "not a regular file"
        }
    }

    /// The error names the file in its message and the whole path in `path`.
    static func notRegular(_ path: String, kind: String, errno: Int32? = nil) -> LedgerError {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return LedgerError(
            .notARegularFile,
            "\(name) is \(kind), not a regular file; a ledger's files are regular files and links are never followed: move it out of the ledger directory (or replace it with the real file)",
            path: path, errno: errno)
    }

    /// The corresponding C function is `pread`. Reads into `buffer` until it is full
    /// or at EOF; returns the bytes read.
    static func pread(_ fd: Int32, path: String, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64) throws -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            if let fault = FaultInjection.check(.read, path: path) {
                if fault == EINTR { continue }
                throw LedgerError(.io, "read failed: \(errnoText(fault))", path: path, offset: offset, errno: fault)
            }
            let n = Glibc.pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            let error = Glibc.errno
            if error == EINTR { continue }
            throw LedgerError(.io, "read failed: \(errnoText(error))", path: path, offset: offset, errno: error)
        }
        return done
    }

    /// The corresponding C function is `pwrite`; continues short writes, retries EINTR.
    @discardableResult
    static func pwrite(_ fd: Int32, path: String, bytes: [UInt8], offset: UInt64, syncData: Bool = false) throws -> Bool {
        try bytes.withUnsafeBytes { try pwrite(fd, path: path, from: $0, offset: offset, syncData: syncData) }
    }

    /// Writes all of `buffer` at `offset`.
    ///
    /// With `syncData`, each write is `pwritev2` with `RWF_DSYNC`: it returns only once
    /// its data is durable, as `pwrite` then `fdatasync` would, in one call. Returns
    /// whether that was done; false (always, without `syncData`) means the caller must
    /// still call `fdatasync`. That is the case where the kernel has no such call
    /// (ENOSYS, EOPNOTSUPP: remembered for the process) or the file system refuses the
    /// flag (EINVAL where a plain write of the same range is taken). A failure is never
    /// retried, as for `fdatasync`. Fault injection sees such a write as a `.write`
    /// followed by a `.fdatasync`: an injected sync fault writes the range without the
    /// flag, then throws "fdatasync failed".
    @discardableResult
    static func pwrite(_ fd: Int32, path: String, from buffer: UnsafeRawBufferPointer, offset: UInt64,
                       syncData: Bool = false) throws -> Bool {
        var synced = syncData && dataSyncWrites.load(ordering: .relaxed)
        guard let base = buffer.baseAddress else { return false }
        var done = 0
        while done < buffer.count {
            var length = buffer.count - done
            let at = off_t(offset) + off_t(done)
            if let fault = FaultInjection.check(.write, path: path) {
                if fault == EINTR { continue }
                if fault == FaultInjection.shortWrite {
                    length = max(1, length / 2)
                } else {
                    throw LedgerError(.io, "write failed: \(errnoText(fault))", path: path, offset: offset, errno: fault)
                }
            }
            if synced, let fault = FaultInjection.check(.fdatasync, path: path) {
                if fault == EINTR { continue }
                _ = Glibc.pwrite(fd, base + done, length, at)
                throw LedgerError(.io, "fdatasync failed: \(errnoText(fault))", path: path, offset: offset, errno: fault)
            }
            let n = synced ? ol_pwrite_dsync(fd, base + done, length, Int64(at)) : Glibc.pwrite(fd, base + done, length, at)
            if n > 0 { done += n; continue }
            let error = n == 0 ? EIO : Glibc.errno
            if error == EINTR { continue }
            if synced, error == ENOSYS || error == EOPNOTSUPP || error == EINVAL {
                // Nothing was written. Without the flag the write either works (the
                // flag was what was refused) or fails again and is reported as a write.
                synced = false
                if error != EINVAL { dataSyncWrites.store(false, ordering: .relaxed) }
                continue
            }
            let call = synced ? "write with RWF_DSYNC (the write and its fdatasync)" : "write"
            throw LedgerError(.io, "\(call) failed: \(errnoText(error))", path: path, offset: offset, errno: error)
        }
        return synced
    }

    /// False once `pwritev2(RWF_DSYNC)` said ENOSYS or EOPNOTSUPP: a kernel older than 4.7.
    private static let dataSyncWrites = Atomic<Bool>(true)

    /// Whether `pwrite(syncData: true)` still tries `pwritev2(RWF_DSYNC)`. For tests.
    static var dataSyncWritesEnabled: Bool { dataSyncWrites.load(ordering: .relaxed) }

    /// The corresponding C function is `fdatasync`. Never retried after a failure
    /// other than EINTR: the caller poisons itself instead.
    static func fdatasync(_ fd: Int32, path: String) throws {
        try simple(.fdatasync, path: path) { Glibc.fdatasync(fd) }
    }

    /// The corresponding C function is `fsync`.
    static func fsync(_ fd: Int32, path: String) throws {
        try simple(.fsync, path: path) { Glibc.fsync(fd) }
    }

    static func ftruncate(_ fd: Int32, path: String, size: UInt64) throws {
        try simple(.truncate, path: path) { Glibc.ftruncate(fd, off_t(size)) }
    }

    static func fileSize(_ fd: Int32, path: String) throws -> UInt64 {
        var info = stat()
        try simple(.stat, path: path) { fstat(fd, &info) }
        return UInt64(info.st_size)
    }

    static func rename(_ from: String, _ to: String) throws {
        try simple(.rename, path: from) { Glibc.rename(from, to) }
    }

    static func unlink(_ path: String) throws {
        try simple(.unlink, path: path) { Glibc.unlink(path) }
    }

    /// Returns whether it created the directory (false: it existed).
    @discardableResult
    static func mkdir(_ path: String) throws -> Bool {
        while true {
            if let fault = FaultInjection.check(.mkdir, path: path) {
                if fault == EINTR { continue }
                throw LedgerError(.io, "mkdir failed: \(errnoText(fault))", path: path, errno: fault)
            }
            if Glibc.mkdir(path, 0o755) == 0 { return true }
            let error = Glibc.errno
            if error == EINTR { continue }
            if error == EEXIST { return false }
            throw LedgerError(.io, "mkdir failed: \(errnoText(error))", path: path, errno: error)
        }
    }

    /// Reads `[offset, offset + count)` of `path` from the device with `O_DIRECT`, in
    /// 4 KiB-aligned requests (what every Linux block device and file system accepts),
    /// or returns nil when the file system refuses direct I/O (EINVAL: tmpfs before
    /// Linux 6.6, some FUSE file systems). Fewer bytes only at the end of the file.
    static func preadDirect(_ path: String, offset: UInt64, count: Int) throws -> [UInt8]? {
        let direct = ol_open_direct_flag()
        guard direct != 0 else { return nil }
        guard count > 0 else { return [] }
        let fd: Int32
        do {
            fd = try openRegularFile(path, flags: O_RDONLY | O_CLOEXEC | direct)
        } catch let error as LedgerError where error.errno == EINVAL {
            return nil
        }
        defer { close(fd) }
        let block: UInt64 = 4096
        let start = offset / block * block
        let (wanted, overflow) = offset.addingReportingOverflow(UInt64(count))
        guard !overflow, wanted <= UInt64(Int.max) - block else {
            throw LedgerError(.invalidArgument, "direct read past the largest file offset", path: path, offset: offset)
        }
        let end = (wanted + block - 1) / block * block
        let length = Int(end - start)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: Int(block))
        defer { buffer.deallocate() }
        var done = 0
        while done < length, let base = buffer.baseAddress {
            if let fault = FaultInjection.check(.read, path: path) {
                if fault == EINTR { continue }
                throw LedgerError(.io, "direct read failed: \(errnoText(fault))", path: path, offset: offset, errno: fault)
            }
            let n = Glibc.pread(fd, base + done, length - done, off_t(start) + off_t(done))
            if n > 0 {
                done += n
                // A short read is the end of the file; reading on from an unaligned offset
                // would be refused.
                if n % Int(block) != 0 { break }
                continue
            }
            if n == 0 { break }
            let error = Glibc.errno
            if error == EINTR { continue }
            if error == EINVAL && done == 0 { return nil }
            throw LedgerError(.io, "direct read failed: \(errnoText(error))", path: path, offset: offset, errno: error)
        }
        let from = Int(offset - start)
        guard done > from else { return [] }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[from..<min(done, from + count)]))
    }

    /// Advice, not an operation: failures are ignored and no fault is injected.
    /// The corresponding C function is `posix_fadvise(POSIX_FADV_WILLNEED)`.
    static func adviseWillNeed(_ path: String) {
        // Never through a link, never blocking on a FIFO (a FIFO named like a segment is
        // reported by the read that follows, not here).
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED)
        close(fd)
    }

    static func close(_ fd: Int32) {
        // close(2) must not be retried on EINTR on Linux: the descriptor is gone.
        _ = Glibc.close(fd)
    }

    /// The corresponding C function is `flock(LOCK_EX|LOCK_NB)`; returns errno.
    static func flockExclusive(_ fd: Int32) -> Int32 {
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return 0 }
            let error = Glibc.errno
            if error == EINTR { continue }
            return error
        }
    }

    static func unlock(_ fd: Int32) {
        _ = flock(fd, LOCK_UN)
    }

    /// The corresponding C function is `read` until end of file (EINTR retried), for
    /// files whose size `fstat` does not give (`/proc/locks` says 0). Nil on an error.
    static func readToEnd(_ fd: Int32) -> [UInt8]? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                return bytes
            } else if Glibc.errno != EINTR {
                return nil
            }
        }
    }

    /// The corresponding C functions are `stat` and `lstat` (`followLink: false`),
    /// EINTR retried; nil on any other failure.
    static func status(_ path: String, followLink: Bool) -> stat? {
        var info = stat()
        while true {
            let result = followLink ? stat(path, &info) : lstat(path, &info)
            if result == 0 { return info }
            if Glibc.errno != EINTR { return nil }
        }
    }

    static func listDirectory(_ path: String) throws -> [String] {
        if let fault = FaultInjection.check(.readdir, path: path), fault != EINTR {
            throw LedgerError(.io, "cannot list directory: \(errnoText(fault))", path: path, errno: fault)
        }
        guard let dir = opendir(path) else {
            let error = Glibc.errno
            throw LedgerError(.io, "cannot list directory: \(errnoText(error))", path: path, errno: error)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// A call that returns 0 or -1 with `errno`: through fault injection, retried on
    /// EINTR, any other failure thrown as an I/O error naming `call` and `path`.
    private static func simple(_ call: FaultInjection.Call, path: String, _ body: () -> Int32) throws {
        while true {
            if let fault = FaultInjection.check(call, path: path) {
                if fault == EINTR { continue }
                throw LedgerError(.io, "\(call) failed: \(errnoText(fault))", path: path, errno: fault)
            }
            if body() == 0 { return }
            let error = Glibc.errno
            if error == EINTR { continue }
            throw LedgerError(.io, "\(call) failed: \(errnoText(error))", path: path, errno: error)
        }
    }

    static func errnoText(_ code: Int32) -> String {
        if code == FaultInjection.shortWrite { return "short write" }
        return String(cString: strerror(code)) + " (errno \(code))"
    }
}

/// Fault injection at the syscall choke point, for tests. A rule applies to calls on
/// paths under `pathPrefix`, so tests in parallel on different directories do not
/// interfere. Rules are counted per (rule): `after` matching calls pass, then the
/// next `count` fail with `errno` (EINTR is retried transparently by `Syscalls`).
/// Not part of the API: visible only to `@_spi(Testing) import OnceLedgerLog`.
@_spi(Testing) public enum FaultInjection {
    public enum Call: String, Sendable, CustomStringConvertible {
        case open, read, write, fdatasync, fsync, truncate, stat, rename, unlink, mkdir, readdir
        public var description: String { rawValue }
    }

    /// Pseudo-errno meaning "perform a short write" (only for `.write`).
    public static let shortWrite: Int32 = -1000

    public struct Rule: Sendable {
        public var pathPrefix: String
        public var call: Call
        public var errno: Int32
        public var after: Int
        public var count: Int
        public init(pathPrefix: String, call: Call, errno: Int32, after: Int = 0, count: Int = 1) {
            self.pathPrefix = pathPrefix
            self.call = call
            self.errno = errno
            self.after = after
            self.count = count
        }
    }

    private struct Installed {
        var rule: Rule
        var seen: Int
        var fired: Int
    }

    private static let rules = Mutex<[Int: Installed]>([:])
    private static let nextID = Atomic<Int>(1)
    private static let active = Atomic<Bool>(false)

    /// Installs a rule; returns a token for `remove`.
    @discardableResult
    public static func install(_ rule: Rule) -> Int {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        rules.withLock { $0[id] = Installed(rule: rule, seen: 0, fired: 0) }
        active.store(true, ordering: .releasing)
        return id
    }

    public static func remove(_ id: Int) {
        rules.withLock { $0[id] = nil }
    }

    /// How many times the rule has fired so far.
    public static func fired(_ id: Int) -> Int {
        rules.withLock { $0[id]?.fired ?? 0 }
    }

    static func check(_ call: Call, path: String) -> Int32? {
        guard active.load(ordering: .acquiring) else { return nil }
        return rules.withLock { rules -> Int32? in
            // Every matching rule counts every matching call (so `after` means what it
            // says even when several rules overlap); the oldest rule that fires wins.
            // Install order, not Dictionary order, so overlapping rules are deterministic.
            var result: Int32?
            for id in rules.keys.sorted() {
                guard var installed = rules[id], installed.rule.call == call,
                      path.hasPrefix(installed.rule.pathPrefix)
                else { continue }
                installed.seen += 1
                if result == nil && installed.seen > installed.rule.after && installed.fired < installed.rule.count {
                    installed.fired += 1
                    result = installed.rule.errno
                }
                rules[id] = installed
            }
            return result
        }
    }
}
