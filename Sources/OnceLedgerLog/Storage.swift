import OnceLedgerFormat

/// The small storage protocol the log engine runs on. `PosixStorage` implements it
/// with real files; `SimulatedStorage` (OnceLedgerTestSupport) implements it in
/// memory with a crash model. All paths are absolute. Every method throws
/// `LedgerError` (code `.io` with `errno`, or `.locked`).
///
/// The contract mirrors POSIX durability: a `write` is durable only after
/// `synchronizeData()`/`synchronize()` on that file; a create, rename or remove
/// is durable only after `synchronizeDirectory` on its directory.
public protocol Storage: Sendable {
    /// Names (not paths) of the entries of a directory, in no particular order.
    func listDirectory(_ path: String) throws -> [String]
    /// Creates a directory (and missing parents), each one it creates durable in its
    /// parent (`fsync` of the parent) before it returns. No error if it exists.
    func createDirectory(_ path: String) throws
    /// Whether a file or directory exists at `path`.
    func exists(_ path: String) -> Bool
    func openFile(_ path: String, mode: FileOpenMode) throws -> any StorageFile
    /// Atomically replaces `to` with `from`. The corresponding C function is `rename`.
    func rename(_ from: String, to: String) throws
    /// The corresponding C function is `unlink`.
    func removeFile(_ path: String) throws
    /// Makes creates, renames and removes in the directory durable.
    /// The corresponding C function is `fsync` on the directory.
    func synchronizeDirectory(_ path: String) throws
    /// Takes the exclusive lock of a ledger directory. A second locker, in this or
    /// another process, gets `LedgerError.locked` naming the holder's pid.
    func lockDirectory(_ path: String) throws -> any StorageLock
    /// See the default implementation in the extension below.
    func prefetch(_ path: String)
    /// `readWholeFile(_:maxBytes:)` into `buffer`, replacing its contents, so that a
    /// reader of many large files (a recovery scan of its segments) can reuse one
    /// allocation. See the default implementation in the extension below.
    func readWholeFile(_ path: String, maxBytes: UInt64, into buffer: inout [UInt8]) throws -> Bool
    /// Reads up to `count` bytes of the file at `path` from `offset` as the device holds
    /// them, bypassing the page cache, or returns nil when this storage cannot. A writer's
    /// open compares the records no sync vouched for with these bytes (`Spec/RECOVERY.md`
    /// §4.1): after a failed `fsync`, Linux keeps the unwritten pages readable but clean,
    /// so a read through the cache shows records the disk never got. See the default
    /// implementation in the extension below.
    func readFromDevice(_ path: String, at offset: UInt64, count: Int) throws -> [UInt8]?
}

public enum FileOpenMode: Sendable {
    case readOnly
    case readWrite
    /// Create a new file; fail if it exists. The C flags are `O_CREAT|O_EXCL|O_RDWR`.
    case createExclusive
}

public protocol StorageFile: AnyObject, Sendable {
    var path: String { get }
    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    /// The corresponding C function is `pread`.
    func read(at offset: UInt64, count: Int) throws -> [UInt8]
    /// Writes all of `bytes` at `offset` (short writes are continued).
    /// The corresponding C function is `pwrite`.
    func write(_ bytes: [UInt8], at offset: UInt64) throws
    /// The corresponding C function is `fdatasync`.
    func synchronizeData() throws
    /// `write` then `synchronizeData`, which a storage may do in one step (see the
    /// default implementation below). A commit's write.
    func writeAndSynchronizeData(_ bytes: [UInt8], at offset: UInt64) throws
    /// The corresponding C function is `fsync`.
    func synchronize() throws
    /// A hint to start writing a written range to the device (see the default below).
    func startWriteback(offset: UInt64, count: UInt64)
    /// The corresponding C function is `fstat` (`st_size`).
    func size() throws -> UInt64
    /// The corresponding C function is `ftruncate`.
    func truncate(to size: UInt64) throws
    func close()
}

public protocol StorageLock: AnyObject, Sendable {
    func unlock()
}

extension StorageFile {
    /// A hint that [offset, offset + count), written, will be synced: the storage may start
    /// sending it to the device now. Makes nothing durable and reports no error. The
    /// default does nothing.
    public func startWriteback(offset: UInt64, count: UInt64) {}

    /// `write`, then `synchronizeData`. `PosixStorage` overrides it with one
    /// `pwritev2(RWF_DSYNC)` where the kernel has it; the durability is the same.
    public func writeAndSynchronizeData(_ bytes: [UInt8], at offset: UInt64) throws {
        try write(bytes, at: offset)
        try synchronizeData()
    }
}

extension Storage {
    /// A hint that `path` will be read soon, whole: the storage may start reading it in
    /// the background. Advice only — it changes no data and reports no error. The
    /// default does nothing.
    public func prefetch(_ path: String) {}

    /// The default cannot read past the page cache: nil. `PosixStorage` reads with
    /// `O_DIRECT`; `SimulatedStorage` returns what its model's disk holds.
    public func readFromDevice(_ path: String, at offset: UInt64, count: Int) throws -> [UInt8]? { nil }

    /// Reads a whole file, or returns nil without reading it when it is larger than
    /// `maxBytes` (files on disk are untrusted: a huge one must not exhaust memory).
    public func readWholeFile(_ path: String, maxBytes: UInt64) throws -> [UInt8]? {
        let file = try openFile(path, mode: .readOnly)
        defer { file.close() }
        guard let count = try wholeFileCount(file, maxBytes: maxBytes) else { return nil }
        return try file.read(at: 0, count: count)
    }

    /// The size of `file`, or nil when it is over `maxBytes` (or over `Int.max`).
    func wholeFileCount(_ file: any StorageFile, maxBytes: UInt64) throws -> Int? {
        let size = try file.size()
        guard size <= maxBytes, size <= UInt64(Int.max) else { return nil }
        return Int(size)
    }

    /// Reads a whole file into `buffer` and returns true, or returns false leaving
    /// `buffer` as it was when the file is larger than `maxBytes`. The default
    /// allocates anew (`readWholeFile(_:maxBytes:)`); `PosixStorage` reads into
    /// `buffer`'s storage when it is large enough (copy-on-write leaves any copy of
    /// `buffer` held elsewhere as it was).
    public func readWholeFile(_ path: String, maxBytes: UInt64, into buffer: inout [UInt8]) throws -> Bool {
        guard let bytes = try readWholeFile(path, maxBytes: maxBytes) else { return false }
        buffer = bytes
        return true
    }
}

/// The one way a file's path is made from its directory and name, everywhere (the
/// engine, the simulated storage, the command-line tool's inspection and salvage).
public enum Paths {
    /// `directory/name`, with no doubled slash when `directory` ends in one (as `/` does).
    public static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
