import Glibc
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

/// An in-memory `Storage` with POSIX durability semantics and a seeded crash model
/// (`ARCHITECTURE.md` §5, after TigerBeetle's `src/testing/storage.zig`).
///
/// ## The model
///
/// - **Files are inodes** holding *durable* bytes (what the disk has) and *current*
///   bytes (what the page cache shows: reads, sizes). Every `write` and `truncate`
///   changes the current bytes at once and is appended to the inode's list of
///   *pending* changes. `synchronizeData()` / `synchronize()` on any handle of the
///   inode makes all its pending changes durable (fdatasync and fsync are the same
///   here: the size is data).
/// - **Directories** map names to inodes, again as *durable* entries and *current*
///   entries; `openFile(.createExclusive)`, `rename` and `removeFile` change the
///   current entries at once and are pending until `synchronizeDirectory` on that
///   directory. A file fsync does not make its directory entry durable. Directories
///   themselves (`createDirectory`) are always durable: the engine creates its one
///   directory before anything else, and modelling lost `mkdir`s would only test the
///   caller's `createDirectory` retry. Removing directories is not supported.
/// - **`crash()` is a power loss.** Pending file changes are resolved per inode,
///   in the order they were made, starting from the durable bytes: each pending
///   write is independently *kept*, *dropped*, *torn* (only a prefix kept, or only
///   some of the 512-byte sectors it touches) or *garbled* (random bytes over part
///   of its range, the rest new or old); a pending truncation is kept or dropped.
///   That covers "writes not covered by fdatasync reach the disk in any order, at
///   any granularity". Pending directory operations are all reverted (entries
///   return to their last synced state), or, with
///   `Options.directoryOperationsMayPersist`, a random prefix of them survives (an
///   ordered metadata journal, as on ext4 and XFS). Inodes no directory entry
///   references afterwards vanish. Current = durable afterwards, locks are released,
///   and every handle opened before the crash throws on use.
/// - **`restartProcess()` is a process kill** without power loss: handles die and
///   locks are released, but the page cache (current bytes, pending changes) survives.
/// - **Crash injection.** `crash(afterOperations: n)` lets the next `n` mutating
///   operations (write, file sync, directory sync, create, rename, remove, truncate,
///   createDirectory) succeed; the one after, and every call after that (reads
///   included), throws `LedgerError(.io, "simulated crash")`: the process is dead.
///   The killing operation has no effect, except a write, which leaves a random
///   prefix (possibly empty) of its bytes as a pending write (the process died
///   inside `pwrite`). Then call `crash()` or `restartProcess()`.
///   `operationCount` counts the mutating operations performed so far, so a test can
///   count a reference run and then crash at every step of it.
/// - **Fault injection.** `injectFault(_:errno:after:)` makes an operation of a kind
///   fail with an errno (EIO, ENOSPC, ...) without killing the process. A failed
///   write leaves a random prefix of its bytes pending (a short write, then the
///   error); a failed file sync leaves the pending changes pending (or, with
///   `Options.failedSyncLosesWrites`, loses them as Linux does after an fsync
///   error: their pages stay readable but clean, and reach the disk only if a
///   later write dirties the page again); other failed operations have no effect.
/// - **Locks.** `lockDirectory` is exclusive per directory across all callers;
///   a second locker gets `LedgerError(.locked, …, holderPID: getpid())`. The lock
///   is not a file (no `LOCK` entry appears in listings).
/// - **Determinism.** Every random choice comes from one `SeededRandom` seeded by
///   `seed`; the same seed and the same sequence of calls give the same states.
///
/// All state is behind one `Mutex`; the storage may be used from any thread.
public final class SimulatedStorage: Storage, Sendable {
    /// What kinds of mutating operation exist (for crash counting and fault injection).
    public enum OperationKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// `StorageFile.write` (pwrite).
        case write
        /// `StorageFile.synchronizeData` (fdatasync) and `synchronize` (fsync).
        case fileSync
        /// `Storage.synchronizeDirectory` (fsync on a directory).
        case directorySync
        /// `Storage.openFile(_, mode: .createExclusive)`.
        case create
        case rename
        /// `Storage.removeFile` (unlink).
        case remove
        /// `StorageFile.truncate` (ftruncate).
        case truncate
        /// `Storage.createDirectory` (mkdir; directories are always durable).
        case createDirectory

        public var description: String { rawValue }
    }

    /// How pending writes fare in a crash: relative weights of the five fates.
    public struct CrashWeights: Sendable, Hashable {
        public var keep: Int = 30
        public var drop: Int = 30
        public var tearPrefix: Int = 15
        public var tearSectors: Int = 15
        public var garble: Int = 10
        public init() {}
        public init(keep: Int, drop: Int, tearPrefix: Int, tearSectors: Int, garble: Int) {
            self.keep = keep
            self.drop = drop
            self.tearPrefix = tearPrefix
            self.tearSectors = tearSectors
            self.garble = garble
        }
        var total: Int { keep + drop + tearPrefix + tearSectors + garble }
    }

    public struct Options: Sendable, Hashable {
        public var weights = CrashWeights()
        /// Sector size for sector-granular tearing.
        public var sectorBytes = 512
        /// In a crash, keep a random prefix of each directory's pending operations
        /// instead of reverting them all.
        public var directoryOperationsMayPersist = false
        /// After a failed file sync, the pending writes of that file are lost, as Linux
        /// does: their pages stay readable but clean, so no later sync writes them
        /// unless a later change dirties the page again, and a crash drops them.
        public var failedSyncLosesWrites = false
        /// Page size for writeback after lost writes.
        public var pageBytes = 4096
        public init() {}
    }

    /// What one `crash()` did (for failure messages).
    public struct CrashSummary: Sendable, Hashable, CustomStringConvertible {
        public var writesKept = 0
        public var writesDropped = 0
        public var writesTorn = 0
        public var writesGarbled = 0
        public var writesLost = 0
        public var truncationsKept = 0
        public var truncationsDropped = 0
        public var directoryOperationsKept = 0
        public var directoryOperationsReverted = 0
        public var inodesRemoved = 0

        public var description: String {
            "writes kept=\(writesKept) dropped=\(writesDropped) torn=\(writesTorn) garbled=\(writesGarbled) "
                + "lost=\(writesLost) truncations kept=\(truncationsKept) dropped=\(truncationsDropped) "
                + "dir-ops kept=\(directoryOperationsKept) reverted=\(directoryOperationsReverted) "
                + "inodes removed=\(inodesRemoved)"
        }
    }

    public let seed: UInt64
    public let options: Options
    let state: Mutex<SimulatedState>

    public init(seed: UInt64, options: Options = Options()) {
        self.seed = seed
        self.options = options
        self.state = Mutex(SimulatedState(seed: seed, options: options))
    }

    // MARK: Crash and fault control

    /// Mutating operations performed so far (since creation, across crashes),
    /// including ones that failed by fault injection, excluding the one a crash killed.
    public var operationCount: Int { state.withLock { $0.operationCount } }

    /// Mutating operations of one kind performed so far.
    public func operationCount(_ kind: OperationKind) -> Int { state.withLock { $0.kindCounts[kind, default: 0] } }

    /// Whether an armed crash has fired: every call throws until `crash()` or `restartProcess()`.
    public var processIsDead: Bool { state.withLock { $0.dead } }

    /// Arms a crash: the next `operations` mutating operations succeed, the one
    /// after kills the process (see the type's documentation). Replaces an armed crash.
    public func crash(afterOperations operations: Int) {
        precondition(operations >= 0, "crash(afterOperations:) needs a non-negative count")
        state.withLock { $0.crashBudget = operations }
    }

    /// Cancels an armed crash that has not fired.
    public func disarmCrash() { state.withLock { $0.crashBudget = nil } }

    /// Power loss: resolves every pending change per the crash model, reverts
    /// pending directory operations, releases locks, invalidates handles, clears
    /// armed crashes and faults, and revives the process.
    @discardableResult
    public func crash() -> CrashSummary {
        state.withLock { $0.powerLoss() }
    }

    /// Process kill without power loss: handles die, locks are released, armed
    /// crashes and faults are cleared; the page cache (pending changes) survives.
    public func restartProcess() {
        state.withLock { $0.restart() }
    }

    /// Makes an operation of `kind` fail with `errno` without crashing: the next
    /// `after` matching operations succeed, the one after fails. `pathContaining`
    /// restricts matching to paths containing that text; `repeating` keeps the
    /// fault armed for every later match (a full disk).
    public func injectFault(
        _ kind: OperationKind, errno: Int32, after: Int = 0, pathContaining: String? = nil, repeating: Bool = false
    ) {
        precondition(after >= 0, "injectFault(after:) needs a non-negative count")
        state.withLock {
            $0.faults.append(SimulatedFault(kind: kind, errno: errno, skip: after, pathContaining: pathContaining,
                                            repeating: repeating))
        }
    }

    public func clearFaults() { state.withLock { $0.faults.removeAll() } }

    /// How many injected faults have fired so far.
    public var faultsFired: Int { state.withLock { $0.faultsFired } }

    // MARK: Test helpers

    /// Every file path (current view), sorted.
    public func listFiles() -> [String] {
        state.withLock { state in
            var paths: [String] = []
            for (directory, entries) in state.directories {
                for name in entries.current.keys { paths.append(Paths.join(directory, name)) }
            }
            return paths.sorted()
        }
    }

    /// The current bytes of a file (what a read sees), or nil if there is none.
    public func fileBytes(_ path: String) -> [UInt8]? {
        state.withLock { state in state.inodeID(SimulatedPath.normalize(path)).map { state.inodes[$0]!.current } }
    }

    /// The durable bytes of a file (what a crash starts from), or nil if there is none.
    public func durableFileBytes(_ path: String) -> [UInt8]? {
        state.withLock { state in state.inodeID(SimulatedPath.normalize(path)).map { state.inodes[$0]!.durable } }
    }

    /// Overwrites bytes of an existing file at `offset`, durably and at once (to
    /// inject corruption into a quiescent ledger). Pending changes stay pending.
    /// Returns false if there is no such file.
    @discardableResult
    public func overwriteDurably(_ path: String, at offset: UInt64, with bytes: [UInt8]) -> Bool {
        state.withLock { state in
            guard let id = state.inodeID(SimulatedPath.normalize(path)) else { return false }
            let change = SimulatedChange.write(offset: Int(offset), bytes: bytes)
            change.apply(to: &state.inodes[id]!.durable)
            change.apply(to: &state.inodes[id]!.current)
            return true
        }
    }

    /// Replaces the whole content of an existing file, durably and at once.
    @discardableResult
    public func replaceFileDurably(_ path: String, with bytes: [UInt8]) -> Bool {
        state.withLock { state in
            guard let id = state.inodeID(SimulatedPath.normalize(path)) else { return false }
            state.inodes[id]!.durable = bytes
            state.inodes[id]!.current = bytes
            state.inodes[id]!.pending.removeAll()
            state.inodes[id]!.unwrittenPages.removeAll()
            return true
        }
    }

    /// Pending (unsynced) file changes and directory operations, in total.
    public var pendingChangeCount: Int {
        state.withLock { state in
            state.inodes.values.reduce(0) { $0 + $1.pending.count }
                + state.directories.values.reduce(0) { $0 + $1.pending.count }
        }
    }

    // MARK: Storage

    public func listDirectory(_ path: String) throws -> [String] {
        let path = SimulatedPath.normalize(path)
        return try state.withLock { state in
            try state.checkAlive(path)
            guard let directory = state.directories[path] else {
                let code = state.inodeID(path) == nil ? ENOENT : ENOTDIR
                throw SimulatedState.error("cannot list directory", path: path, errno: code)
            }
            var names = Array(directory.current.keys)
            for other in state.directories.keys where other != path && SimulatedPath.parent(other) == path {
                names.append(SimulatedPath.name(other))
            }
            return names.sorted()
        }
    }

    public func createDirectory(_ path: String) throws {
        let path = SimulatedPath.normalize(path)
        try state.withLock { state in
            switch state.gate(.createDirectory, path: path) {
            case .killed, .dead: throw SimulatedState.crashError(path)
            case .fault(let code): throw SimulatedState.error("mkdir failed (injected)", path: path, errno: code)
            case .proceed: break
            }
            var prefix = ""
            for component in path.split(separator: "/") {
                prefix += "/" + component
                if state.directories[prefix] != nil { continue }
                if state.inodeID(prefix) != nil {
                    throw SimulatedState.error("mkdir failed: a file is in the way", path: prefix, errno: ENOTDIR)
                }
                state.directories[prefix] = SimulatedDirectory()
            }
        }
    }

    public func exists(_ path: String) -> Bool {
        let path = SimulatedPath.normalize(path)
        return state.withLock { state in
            !state.dead && (state.directories[path] != nil || state.inodeID(path) != nil)
        }
    }

    public func openFile(_ path: String, mode: FileOpenMode) throws -> any StorageFile {
        let path = SimulatedPath.normalize(path)
        return try state.withLock { state -> SimulatedFile in
            switch mode {
            case .readOnly, .readWrite:
                try state.checkAlive(path)
                if state.directories[path] != nil {
                    throw SimulatedState.error("cannot open a directory as a file", path: path, errno: EISDIR)
                }
                guard let id = state.inodeID(path) else {
                    throw SimulatedState.error("cannot open: no such file", path: path, errno: ENOENT)
                }
                return SimulatedFile(storage: self, inode: id, path: path, writable: mode == .readWrite,
                                     epoch: state.epoch)
            case .createExclusive:
                switch state.gate(.create, path: path) {
                case .killed, .dead: throw SimulatedState.crashError(path)
                case .fault(let code): throw SimulatedState.error("cannot create (injected)", path: path, errno: code)
                case .proceed: break
                }
                let parent = SimulatedPath.parent(path)
                guard state.directories[parent] != nil else {
                    throw SimulatedState.error("cannot create: no such directory", path: path, errno: ENOENT)
                }
                if state.directories[path] != nil || state.inodeID(path) != nil {
                    throw SimulatedState.error("cannot create: file exists", path: path, errno: EEXIST)
                }
                let id = state.newInode()
                state.changeEntries(parent, [SimulatedEntryChange(name: SimulatedPath.name(path), inode: id)])
                return SimulatedFile(storage: self, inode: id, path: path, writable: true, epoch: state.epoch)
            }
        }
    }

    public func rename(_ from: String, to: String) throws {
        let from = SimulatedPath.normalize(from)
        let to = SimulatedPath.normalize(to)
        try state.withLock { state in
            switch state.gate(.rename, path: from) {
            case .killed, .dead: throw SimulatedState.crashError(from)
            case .fault(let code): throw SimulatedState.error("rename failed (injected)", path: from, errno: code)
            case .proceed: break
            }
            guard let id = state.inodeID(from) else {
                throw SimulatedState.error("rename failed: no such file", path: from, errno: ENOENT)
            }
            let fromParent = SimulatedPath.parent(from)
            let toParent = SimulatedPath.parent(to)
            guard state.directories[toParent] != nil else {
                throw SimulatedState.error("rename failed: no such directory", path: to, errno: ENOENT)
            }
            if state.directories[to] != nil {
                throw SimulatedState.error("rename failed: target is a directory", path: to, errno: EISDIR)
            }
            if from == to { return }
            let fromName = SimulatedPath.name(from)
            let toName = SimulatedPath.name(to)
            if fromParent == toParent {
                state.changeEntries(fromParent, [SimulatedEntryChange(name: toName, inode: id),
                                                 SimulatedEntryChange(name: fromName, inode: nil)])
            } else {
                // Two directories: each side is pending until its own directory is synced.
                state.changeEntries(toParent, [SimulatedEntryChange(name: toName, inode: id)])
                state.changeEntries(fromParent, [SimulatedEntryChange(name: fromName, inode: nil)])
            }
        }
    }

    public func removeFile(_ path: String) throws {
        let path = SimulatedPath.normalize(path)
        try state.withLock { state in
            switch state.gate(.remove, path: path) {
            case .killed, .dead: throw SimulatedState.crashError(path)
            case .fault(let code): throw SimulatedState.error("unlink failed (injected)", path: path, errno: code)
            case .proceed: break
            }
            if state.directories[path] != nil {
                throw SimulatedState.error("unlink failed: is a directory", path: path, errno: EISDIR)
            }
            guard state.inodeID(path) != nil else {
                throw SimulatedState.error("unlink failed: no such file", path: path, errno: ENOENT)
            }
            state.changeEntries(SimulatedPath.parent(path), [SimulatedEntryChange(name: SimulatedPath.name(path), inode: nil)])
        }
    }

    public func synchronizeDirectory(_ path: String) throws {
        let path = SimulatedPath.normalize(path)
        try state.withLock { state in
            switch state.gate(.directorySync, path: path) {
            case .killed, .dead: throw SimulatedState.crashError(path)
            case .fault(let code): throw SimulatedState.error("directory fsync failed (injected)", path: path, errno: code)
            case .proceed: break
            }
            guard state.directories[path] != nil else {
                throw SimulatedState.error("cannot open directory: no such directory", path: path, errno: ENOENT)
            }
            state.directories[path]!.durable = state.directories[path]!.current
            state.directories[path]!.pending.removeAll()
        }
    }

    public func lockDirectory(_ path: String) throws -> any StorageLock {
        let path = SimulatedPath.normalize(path)
        return try state.withLock { state -> SimulatedLock in
            try state.checkAlive(path)
            guard state.directories[path] != nil else {
                throw SimulatedState.error("cannot open lock file: no such directory", path: path, errno: ENOENT)
            }
            if state.locks[path] != nil {
                throw LedgerError(
                    .locked, "the ledger is locked by process \(getpid()); close it there first (one writer per directory)",
                    path: path, holderPID: getpid())
            }
            state.nextLockID += 1
            state.locks[path] = state.nextLockID
            return SimulatedLock(storage: self, directory: path, id: state.nextLockID)
        }
    }

    /// What the model's disk would give a read that bypasses the page cache (`O_DIRECT`
    /// on Linux): the current bytes, except on pages a failed sync left clean but
    /// unwritten (`Options.failedSyncLosesWrites`) and no later change dirtied again,
    /// where the disk still has its durable bytes (zeros past their end). Dirty pages
    /// read as current (the kernel writes them back before a direct read); nothing
    /// becomes durable.
    public func readFromDevice(_ path: String, at offset: UInt64, count: Int) throws -> [UInt8]? {
        let path = SimulatedPath.normalize(path)
        return try state.withLock { state in
            try state.checkAlive(path)
            guard count >= 0 else { throw SimulatedState.error("read of a negative count", path: path, errno: EINVAL) }
            guard let id = state.inodeID(path), let inode = state.inodes[id] else {
                throw SimulatedState.error("cannot open", path: path, errno: state.directories[path] == nil ? ENOENT : EISDIR)
            }
            guard offset < UInt64(inode.current.count) else { return [] }
            let range = Int(offset)..<min(inode.current.count, Int(offset) + count)
            var device = Array(inode.current[range])
            if !inode.unwrittenPages.isEmpty {
                let pageBytes = state.options.pageBytes
                var dirty = Set<Int>()
                for entry in inode.pending { dirty.formUnion(entry.change.pages(pageBytes: pageBytes)) }
                for page in inode.unwrittenPages where !dirty.contains(page) {
                    let pageRange = (page * pageBytes)..<((page + 1) * pageBytes)
                    for at in pageRange.clamped(to: range) {
                        device[at - range.lowerBound] = at < inode.durable.count ? inode.durable[at] : 0
                    }
                }
            }
            return device
        }
    }

    // MARK: Handle operations (called by SimulatedFile and SimulatedLock)

    func fileRead(_ file: SimulatedFile, at offset: UInt64, count: Int) throws -> [UInt8] {
        try state.withLock { state in
            try state.checkHandle(file)
            guard count >= 0 else {
                throw SimulatedState.error("read of a negative count", path: file.path, errno: EINVAL)
            }
            let bytes = state.inodes[file.inode]!.current
            guard offset < UInt64(bytes.count) else { return [] }
            let start = Int(offset)
            return Array(bytes[start..<min(bytes.count, start + count)])
        }
    }

    func fileWrite(_ file: SimulatedFile, _ bytes: [UInt8], at offset: UInt64) throws {
        try state.withLock { state in
            try state.checkHandle(file)
            guard file.writable else {
                throw SimulatedState.error("write on a read-only handle", path: file.path, errno: EBADF)
            }
            guard offset <= UInt64(Int32.max) else {
                throw SimulatedState.error("write beyond the simulated file size limit", path: file.path, errno: EFBIG)
            }
            switch state.gate(.write, path: file.path) {
            case .dead:
                throw SimulatedState.crashError(file.path)
            case .killed:
                // The process died inside pwrite: some prefix of the bytes reached the page cache.
                let kept = state.random.int(in: 0...bytes.count)
                if kept > 0 { state.pendingWrite(file.inode, offset: Int(offset), bytes: Array(bytes[0..<kept])) }
                throw SimulatedState.crashError(file.path)
            case .fault(let code):
                // A short write, then the error.
                let kept = state.random.int(in: 0...bytes.count)
                if kept > 0 { state.pendingWrite(file.inode, offset: Int(offset), bytes: Array(bytes[0..<kept])) }
                throw SimulatedState.error("write failed (injected)", path: file.path, errno: code)
            case .proceed:
                state.pendingWrite(file.inode, offset: Int(offset), bytes: bytes)
            }
        }
    }

    func fileSync(_ file: SimulatedFile) throws {
        try state.withLock { state in
            try state.checkHandle(file)
            switch state.gate(.fileSync, path: file.path) {
            case .killed, .dead: throw SimulatedState.crashError(file.path)
            case .fault(let code):
                if state.options.failedSyncLosesWrites {
                    state.writesLost += state.inodes[file.inode]!.loseWrites(pageBytes: state.options.pageBytes)
                }
                throw SimulatedState.error("fsync failed (injected)", path: file.path, errno: code)
            case .proceed:
                state.inodes[file.inode]!.synchronize(pageBytes: state.options.pageBytes)
            }
        }
    }

    func fileSize(_ file: SimulatedFile) throws -> UInt64 {
        try state.withLock { state in
            try state.checkHandle(file)
            return UInt64(state.inodes[file.inode]!.current.count)
        }
    }

    func fileTruncate(_ file: SimulatedFile, to size: UInt64) throws {
        try state.withLock { state in
            try state.checkHandle(file)
            guard file.writable else {
                throw SimulatedState.error("truncate on a read-only handle", path: file.path, errno: EBADF)
            }
            guard size <= UInt64(Int32.max) else {
                throw SimulatedState.error("truncate beyond the simulated file size limit", path: file.path, errno: EFBIG)
            }
            switch state.gate(.truncate, path: file.path) {
            case .killed, .dead: throw SimulatedState.crashError(file.path)
            case .fault(let code): throw SimulatedState.error("ftruncate failed (injected)", path: file.path, errno: code)
            case .proceed:
                let change = SimulatedChange.truncate(size: Int(size))
                change.apply(to: &state.inodes[file.inode]!.current)
                state.inodes[file.inode]!.pending.append(SimulatedPendingChange(change: change))
            }
        }
    }

    func releaseLock(directory: String, id: Int) {
        state.withLock { state in
            if state.locks[directory] == id { state.locks[directory] = nil }
        }
    }
}

/// A handle on a simulated inode. Works until closed or until the simulated
/// process dies (an armed crash fires, `crash()`, `restartProcess()`).
final class SimulatedFile: StorageFile, Sendable {
    let storage: SimulatedStorage
    let inode: Int
    let path: String
    let writable: Bool
    let epoch: Int
    let closed = Atomic<Bool>(false)

    init(storage: SimulatedStorage, inode: Int, path: String, writable: Bool, epoch: Int) {
        self.storage = storage
        self.inode = inode
        self.path = path
        self.writable = writable
        self.epoch = epoch
    }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] { try storage.fileRead(self, at: offset, count: count) }
    func write(_ bytes: [UInt8], at offset: UInt64) throws { try storage.fileWrite(self, bytes, at: offset) }
    func synchronizeData() throws { try storage.fileSync(self) }
    func synchronize() throws { try storage.fileSync(self) }
    func size() throws -> UInt64 { try storage.fileSize(self) }
    func truncate(to size: UInt64) throws { try storage.fileTruncate(self, to: size) }
    func close() { closed.store(true, ordering: .releasing) }
}

final class SimulatedLock: StorageLock, Sendable {
    let storage: SimulatedStorage
    let directory: String
    let id: Int

    init(storage: SimulatedStorage, directory: String, id: Int) {
        self.storage = storage
        self.directory = directory
        self.id = id
    }

    /// Releases the lock if this holder still has it (a crash already released it).
    func unlock() { storage.releaseLock(directory: directory, id: id) }
}
