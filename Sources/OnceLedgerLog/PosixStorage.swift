import Glibc
import COnceSupport
import OnceLedgerFormat

/// `Storage` on real files through `Syscalls` (the choke point).
public struct PosixStorage: Storage {
    /// Whether small writes to files opened for writing go to the device with
    /// `O_DIRECT` (`DirectWrites`) instead of through the page cache. Either way a
    /// write is durable only after `synchronizeData()`; direct writes only make the
    /// write-then-`fdatasync` of a commit cheaper.
    public let directWrites: Bool

    public init(directWrites: Bool = true) {
        self.directWrites = directWrites
    }

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

    /// Whether an entry of any type exists at `path` (`lstat`: a symbolic link, even a
    /// dangling one, exists; it is not followed).
    public func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    public func openFile(_ path: String, mode: FileOpenMode) throws -> any StorageFile {
        try open(path, mode: mode)
    }

    private func open(_ path: String, mode: FileOpenMode) throws -> PosixFile {
        let flags: Int32
        switch mode {
        case .readOnly: flags = O_RDONLY
        case .readWrite: flags = O_RDWR
        case .createExclusive: flags = O_RDWR | O_CREAT | O_EXCL
        }
        // Never through a link, never blocking on a FIFO; only a regular file is opened.
        let fd = try Syscalls.openRegularFile(path, flags: flags)
        return PosixFile(fd: fd, path: path, directWrites: directWrites && mode != .readOnly)
    }

    /// Reads into `buffer`'s storage when it already holds at least the file's size;
    /// otherwise into a fresh allocation. A recovery scan reads every segment into
    /// one buffer this way: faulting in fresh memory for each segment can cost more
    /// than the read itself (on a virtual machine that hands freed memory back to
    /// its host, every first touch goes through the host).
    public func readWholeFile(_ path: String, maxBytes: UInt64, into buffer: inout [UInt8]) throws -> Bool {
        let file = try open(path, mode: .readOnly)
        defer { file.close() }
        guard let count = try wholeFileCount(file, maxBytes: maxBytes) else { return false }
        guard buffer.count >= count else {
            buffer = []  // free the old storage before taking the new
            buffer = try file.read(at: 0, count: count)
            return true
        }
        buffer.removeLast(buffer.count - count)
        let read = try buffer.withUnsafeMutableBytes { try file.read(at: 0, into: $0) }
        buffer.removeLast(count - read)
        return true
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

    /// The writer's exclusion (`Spec/FORMAT.md` §2.2): `flock(LOCK_EX|LOCK_NB)` on a
    /// descriptor of the directory itself, which no `rm` or `mv` inside it can swap for
    /// another file. Then `LOCK` (never through a link, regular files only) is locked
    /// too, so a process of an earlier version, which locks only `LOCK`, is excluded
    /// as well, and gets the holder's pid written into it for the next opener's message.
    public func lockDirectory(_ path: String) throws -> any StorageLock {
        let (directoryFD, openError) = Syscalls.open(path, flags: O_RDONLY | O_DIRECTORY)
        guard directoryFD >= 0 else {
            throw LedgerError(.io, "cannot open directory: \(Syscalls.errnoText(openError))", path: path, errno: openError)
        }
        let lockPath = Paths.join(path, LedgerFileNames.lock)
        let directoryError = Syscalls.flockExclusive(directoryFD)
        if directoryError != 0 {
            Syscalls.close(directoryFD)
            throw PosixStorage.lockFailure(directoryError, directory: path, lockPath: lockPath)
        }
        let fd: Int32
        do {
            fd = try Syscalls.openRegularFile(lockPath, flags: O_RDWR | O_CREAT)
        } catch {
            Syscalls.unlock(directoryFD)
            Syscalls.close(directoryFD)
            throw error
        }
        let lockError = Syscalls.flockExclusive(fd)
        if lockError != 0 {
            Syscalls.close(fd)
            Syscalls.unlock(directoryFD)
            Syscalls.close(directoryFD)
            throw PosixStorage.lockFailure(lockError, directory: path, lockPath: lockPath)
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
            Syscalls.unlock(directoryFD)
            Syscalls.close(directoryFD)
            throw error
        }
        return PosixLock(directoryFD: directoryFD, fd: fd)
    }

    /// A failed `flock`: `.locked` naming the holder's pid from `LOCK`'s text (read
    /// without following a link or blocking), or `.io`.
    private static func lockFailure(_ error: Int32, directory: String, lockPath: String) -> LedgerError {
        guard error == EWOULDBLOCK else {
            return LedgerError(.io, "cannot lock: \(Syscalls.errnoText(error))", path: lockPath, errno: error)
        }
        let holder = PosixStorage.lockHolderText(lockPath)
        let who = holder.map { "process \($0)" } ?? "another process"
        return LedgerError(
            .locked, "the ledger is locked by \(who); close it there first (one writer per directory)",
            path: directory, holderPID: holder)
    }

    /// The pid a lock holder wrote into `LOCK` (advisory text, up to 32 bytes), or nil.
    static func lockHolderText(_ lockPath: String) -> Int32? {
        guard let fd = try? Syscalls.openRegularFile(lockPath, flags: O_RDONLY) else { return nil }
        defer { Syscalls.close(fd) }
        guard let bytes = try? Syscalls.pread(fd, path: lockPath, count: 32, offset: 0) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingWhitespace())
    }
}

final class PosixLock: StorageLock, @unchecked Sendable {
    private var directoryFD: Int32
    private var fd: Int32
    init(directoryFD: Int32, fd: Int32) {
        self.directoryFD = directoryFD
        self.fd = fd
    }
    func unlock() {
        guard fd >= 0 else { return }
        Syscalls.unlock(fd)
        Syscalls.close(fd)
        fd = -1
        Syscalls.unlock(directoryFD)
        Syscalls.close(directoryFD)
        directoryFD = -1
    }
    deinit { unlock() }
}

/// A file descriptor plus its path (for error messages and fault injection).
/// Used from one thread at a time (the engine's I/O thread); not synchronized.
final class PosixFile: StorageFile, @unchecked Sendable {
    let path: String
    private var fd: Int32
    private var direct: DirectWrites?

    init(fd: Int32, path: String, directWrites: Bool = false) {
        self.fd = fd
        self.path = path
        self.direct = directWrites ? DirectWrites(path: path) : nil
    }

    /// Writes done with `O_DIRECT`, and writes it declined (done through the page
    /// cache); both 0 when direct writes are off. For tests.
    var directWriteCounts: (direct: Int, declined: Int) {
        (direct?.directCount ?? 0, direct?.declinedCount ?? 0)
    }

    private func live() throws -> Int32 {
        guard fd >= 0 else { throw LedgerError(.closed, "file is closed", path: path) }
        return fd
    }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try Syscalls.pread(live(), path: path, count: count, offset: offset)
    }

    /// Reads into `buffer` until it is full or at end of file; returns the bytes read.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try Syscalls.pread(live(), path: path, into: buffer, offset: offset)
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        _ = try write(bytes, at: offset, syncData: false)
    }

    /// One `pwritev2(RWF_DSYNC)` where the kernel has it, else `pwrite` and `fdatasync`.
    /// Measured on ext4 over virtio, 3–5 µs less per commit than the two calls
    /// (`onceledger bench`).
    func writeAndSynchronizeData(_ bytes: [UInt8], at offset: UInt64) throws {
        if try write(bytes, at: offset, syncData: true) {
            dataSyncedWrites += 1
        } else {
            try synchronizeData()
        }
    }

    /// `writeAndSynchronizeData` calls done as one `pwritev2(RWF_DSYNC)`. For tests.
    private(set) var dataSyncedWrites = 0

    /// Returns whether the write also synced the data (see `Syscalls.pwrite`).
    private func write(_ bytes: [UInt8], at offset: UInt64, syncData: Bool) throws -> Bool {
        let fd = try live()
        if let direct {
            if let synced = try direct.write(bytes, at: offset, cachedFD: fd, syncData: syncData) { return synced }
            // Written through the page cache instead: bytes the window mirrors may change.
            direct.forget()
        }
        return try Syscalls.pwrite(fd, path: path, bytes: bytes, offset: offset, syncData: syncData)
    }

    func synchronizeData() throws { try Syscalls.fdatasync(live(), path: path) }
    func synchronize() throws { try Syscalls.fsync(live(), path: path) }
    func size() throws -> UInt64 { try Syscalls.fileSize(live(), path: path) }

    func truncate(to size: UInt64) throws {
        direct?.forget()
        try Syscalls.ftruncate(live(), path: path, size: size)
    }

    func close() {
        guard fd >= 0 else { return }
        direct?.close()
        direct = nil
        Syscalls.close(fd)
        fd = -1
    }

    deinit { close() }
}

/// Small writes inside a file, sent to the device with `O_DIRECT` in whole 4 KiB
/// blocks. A commit is one small `pwrite` plus one `fdatasync`; through the page
/// cache, the `fdatasync` must first write the dirtied page back, and measured on
/// ext4 over virtio that costs 10–20 µs more per commit than a direct write of the
/// same block followed by the same `fdatasync` (`onceledger bench` prints both
/// raw loops, and the engine both ways). The `fdatasync` is still needed and still made: it flushes the
/// device's volatile write cache (`Spec/FORMAT.md` §7).
///
/// A direct write must cover whole blocks, so the bytes of the first and last block
/// around the caller's range are written again with the values they already have.
/// They come from `window`, an aligned copy of up to 64 KiB of the file read
/// through the page cache and kept up to date by every write this file makes
/// (which is why only the file's one writer may use it). That rewrite adds no
/// exposure: a buffered `fdatasync` writes the same whole page back.
///
/// It declines a write it cannot do directly, and the caller then writes through
/// the page cache: when the file system refuses `O_DIRECT` (tmpfs, some FUSE
/// mounts: `EINVAL` at open or at the first write), when the second descriptor
/// cannot be had (EMFILE, ENFILE, ENOMEM) or its path no longer leads to the file
/// (renamed or removed since it was opened), when the range reaches past the file's
/// last whole block (a direct write must never round the file size up), and for
/// writes over 32 KiB (segment preallocation). A failed read of the window, or an
/// open failing otherwise, is an I/O error like any other and is thrown.
final class DirectWrites {
    static let blockBytes = 4096
    static let windowBytes = 64 << 10
    static let largestWrite = windowBytes / 2

    private let path: String
    /// The `O_DIRECT` descriptor, opened at the first direct write.
    private var fd: Int32 = -1
    /// False once the file system has refused `O_DIRECT`: every write is buffered.
    private var usable = ol_open_direct_flag() != 0
    private var window: UnsafeMutableRawPointer?
    /// File offset of the window's first byte (block-aligned), and how many bytes
    /// from there mirror the file (whole blocks; 0: nothing is cached).
    private var windowStart: UInt64 = 0
    private var windowValid = 0
    /// Writes done directly, and writes declined; for tests.
    private(set) var directCount = 0
    private(set) var declinedCount = 0

    init(path: String) {
        self.path = path
    }

    deinit { close() }

    func forget() { windowValid = 0 }

    func close() {
        if fd >= 0 { Syscalls.close(fd) }
        fd = -1
        window?.deallocate()
        window = nil
        windowValid = 0
    }

    /// Writes `bytes` at `offset` directly and returns whether that also synced the
    /// data (`syncData`, see `Syscalls.pwrite`), or returns nil having written nothing
    /// the caller's own write would not write again.
    /// A failed write names `offset`, the caller's, not the block's; a failed read of
    /// the window names the offset it read at.
    func write(_ bytes: [UInt8], at offset: UInt64, cachedFD: Int32, syncData: Bool) throws -> Bool? {
        do {
            let done = try attempt(bytes, at: offset, cachedFD: cachedFD, syncData: syncData)
            if done != nil { directCount += 1 } else { declinedCount += 1 }
            return done
        } catch {
            // What reached the device is unknown: the window no longer mirrors it.
            windowValid = 0
            throw error
        }
    }

    private func attempt(_ bytes: [UInt8], at offset: UInt64, cachedFD: Int32, syncData: Bool) throws -> Bool? {
        let block = UInt64(DirectWrites.blockBytes)
        guard usable, !bytes.isEmpty, bytes.count <= DirectWrites.largestWrite else { return nil }
        let start = offset / block * block
        let (end, overflow) = offset.addingReportingOverflow(UInt64(bytes.count))
        guard !overflow, end <= UInt64.max - block else { return nil }
        let alignedEnd = (end + block - 1) / block * block
        if !(windowValid > 0 && start >= windowStart && alignedEnd <= windowStart + UInt64(windowValid)) {
            try refill(at: start, cachedFD: cachedFD)
            guard alignedEnd <= windowStart + UInt64(windowValid) else { return nil }
        }
        guard let window, try openDirect(sameFileAs: cachedFD) else { return nil }
        bytes.withUnsafeBytes { source in
            (window + Int(offset - windowStart)).copyMemory(from: source.baseAddress!, byteCount: source.count)
        }
        do {
            return try Syscalls.pwrite(
                fd, path: path,
                from: UnsafeRawBufferPointer(start: window + Int(start - windowStart), count: Int(alignedEnd - start)),
                offset: start, alignment: DirectWrites.blockBytes, syncData: syncData)
        } catch let error as LedgerError where error.errno == EINVAL {
            // The file system takes O_DIRECT opens but not these writes: buffer from now on.
            usable = false
            close()
            return nil
        } catch var error as LedgerError {
            error.offset = offset
            throw error
        }
    }

    /// Reads the window's worth of the file from `start` through the page cache (which
    /// direct writes keep coherent), keeping only whole blocks.
    private func refill(at start: UInt64, cachedFD: Int32) throws {
        windowValid = 0
        let window = self.window
            ?? UnsafeMutableRawPointer.allocate(byteCount: DirectWrites.windowBytes, alignment: DirectWrites.blockBytes)
        self.window = window
        let read = try Syscalls.pread(
            cachedFD, path: path, into: UnsafeMutableRawBufferPointer(start: window, count: DirectWrites.windowBytes),
            offset: start)
        windowStart = start
        windowValid = read / DirectWrites.blockBytes * DirectWrites.blockBytes
    }

    /// Opens the `O_DIRECT` descriptor by the file's path, and checks that it reached
    /// the file `cachedFD` is open on. False (and buffered writes from now on) when the
    /// file system does not support it (EINVAL), when the process is out of
    /// descriptors or memory (a second descriptor is an optimization, not a reason to
    /// fail a commit), or when the path no longer leads to this file (renamed or
    /// removed since it was opened). Any other error (EIO, also from `fstat`) is the
    /// file's, and is thrown.
    private func openDirect(sameFileAs cachedFD: Int32) throws -> Bool {
        if fd >= 0 { return true }
        let (descriptor, error) = Syscalls.open(path, flags: O_RDWR | O_NOFOLLOW | ol_open_direct_flag())
        guard descriptor >= 0 else {
            guard [EINVAL, EMFILE, ENFILE, ENOMEM, ENOENT, ELOOP].contains(error) else {
                throw LedgerError(.io, "cannot open for direct writes: \(Syscalls.errnoText(error))", path: path, errno: error)
            }
            usable = false
            return false
        }
        let same: Bool
        do {
            same = try Syscalls.fileIdentity(cachedFD, path: path) == Syscalls.fileIdentity(descriptor, path: path)
        } catch {
            Syscalls.close(descriptor)
            throw error
        }
        guard same else {
            Syscalls.close(descriptor)
            usable = false
            return false
        }
        fd = descriptor
        return true
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
