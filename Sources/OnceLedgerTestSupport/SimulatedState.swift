#if !os(Linux)
#error("OnceLedgerTestSupport supports Linux (glibc) only, as the OnceLedger libraries it simulates do.")
#endif
import Glibc
import OnceLedgerFormat

/// One change to a file's bytes.
enum SimulatedChange: Sendable {
    case write(offset: Int, bytes: [UInt8])
    case truncate(size: Int)

    /// Indices of the pages the change dirties.
    func pages(pageBytes: Int) -> Range<Int> {
        switch self {
        case .write(let offset, let data):
            guard !data.isEmpty else { return 0..<0 }
            return (offset / pageBytes)..<((offset + data.count - 1) / pageBytes + 1)
        case .truncate(let size):
            return (size / pageBytes)..<(size / pageBytes + 1)
        }
    }

    /// Applies the change to `bytes` (a write past the end fills the gap with zeros).
    func apply(to bytes: inout [UInt8]) {
        switch self {
        case .write(let offset, let data):
            // Bulk copies: tests run unoptimized, where element-wise paths dominate.
            if bytes.count < offset { bytes.append(contentsOf: [UInt8](repeating: 0, count: offset - bytes.count)) }
            let overlap = min(data.count, bytes.count - offset)
            if overlap > 0 {
                bytes.withUnsafeMutableBytes { target in
                    data.withUnsafeBytes { source in
                        (target.baseAddress! + offset).copyMemory(from: source.baseAddress!, byteCount: overlap)
                    }
                }
            }
            if overlap < data.count {
                data.withUnsafeBufferPointer { source in
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: source[overlap...]))
                }
            }
        case .truncate(let size):
            if size < bytes.count {
                bytes.removeSubrange(size...)
            } else if size > bytes.count {
                bytes.append(contentsOf: [UInt8](repeating: 0, count: size - bytes.count))
            }
        }
    }
}

struct SimulatedPendingChange: Sendable {
    var change: SimulatedChange
}

struct SimulatedInode: Sendable {
    var durable: [UInt8] = []
    var current: [UInt8] = []
    var pending: [SimulatedPendingChange] = []
    /// Pages a failed fsync left clean but unwritten (`Options.failedSyncLosesWrites`):
    /// reads see their current bytes, the disk keeps its old ones until a later
    /// change dirties the page again.
    var unwrittenPages: Set<Int> = []

    /// fsync: every pending change becomes durable. Writeback is per page, so a
    /// page dirtied again carries its whole current content, lost bytes included.
    mutating func synchronize(pageBytes: Int) {
        if unwrittenPages.isEmpty {
            durable = current
            pending.removeAll()
            return
        }
        var disk = durable
        SimulatedChange.truncate(size: current.count).apply(to: &disk)
        var dirty = Set<Int>()
        for entry in pending { dirty.formUnion(entry.change.pages(pageBytes: pageBytes)) }
        for page in dirty where page * pageBytes < current.count {
            let range = (page * pageBytes)..<min(current.count, (page + 1) * pageBytes)
            SimulatedChange.write(offset: range.lowerBound, bytes: Array(current[range])).apply(to: &disk)
        }
        unwrittenPages.subtract(dirty)
        unwrittenPages = unwrittenPages.filter { $0 * pageBytes < current.count }
        durable = disk
        pending.removeAll()
    }

    /// A failed fsync with lost writes: the pending changes' pages become clean but
    /// unwritten. Returns how many pending changes were lost.
    mutating func loseWrites(pageBytes: Int) -> Int {
        let count = pending.count
        for entry in pending { unwrittenPages.formUnion(entry.change.pages(pageBytes: pageBytes)) }
        pending.removeAll()
        return count
    }
}

/// One entry change; a directory operation is a group of them applied atomically.
struct SimulatedEntryChange: Sendable {
    var name: String
    /// The inode the name now refers to, or nil for a removal.
    var inode: Int?
}

struct SimulatedDirectory: Sendable {
    var current: [String: Int] = [:]
    var durable: [String: Int] = [:]
    /// Operations since the last directory sync, in order.
    var pending: [[SimulatedEntryChange]] = []
}

struct SimulatedFault: Sendable {
    var kind: SimulatedStorage.OperationKind
    var errno: Int32
    var skip: Int
    var pathContaining: String?
    var repeating: Bool
}

enum SimulatedPath {
    /// Absolute, without empty or `.` components and without a trailing slash.
    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(component)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func parent(_ normalized: String) -> String {
        guard let slash = normalized.lastIndex(of: "/"), slash != normalized.startIndex else { return "/" }
        return String(normalized[..<slash])
    }

    static func name(_ normalized: String) -> String {
        guard let slash = normalized.lastIndex(of: "/") else { return normalized }
        return String(normalized[normalized.index(after: slash)...])
    }

}

/// Everything `SimulatedStorage` knows, behind its one lock.
struct SimulatedState: Sendable {
    enum Gate {
        case proceed
        /// The armed crash kills the process at this operation.
        case killed
        /// The process is already dead.
        case dead
        case fault(Int32)
    }

    var options: SimulatedStorage.Options
    var random: SeededRandom
    var inodes: [Int: SimulatedInode] = [:]
    var nextInode = 0
    var directories: [String: SimulatedDirectory] = ["/": SimulatedDirectory()]
    /// Process generation: handles from an older one throw.
    var epoch = 0
    var dead = false
    var crashBudget: Int?
    var operationCount = 0
    var kindCounts: [SimulatedStorage.OperationKind: Int] = [:]
    var faults: [SimulatedFault] = []
    var faultsFired = 0
    /// Pending writes lost by failed syncs since the last power loss.
    var writesLost = 0
    var locks: [String: Int] = [:]
    var nextLockID = 0

    init(seed: UInt64, options: SimulatedStorage.Options) {
        self.options = options
        self.random = SeededRandom(seed: seed)
    }

    static func crashError(_ path: String?) -> LedgerError {
        LedgerError(.io, "simulated crash", path: path)
    }

    static func error(_ message: String, path: String, errno code: Int32) -> LedgerError {
        LedgerError(.io, "\(message): \(String(cString: strerror(code)))", path: path, errno: code)
    }

    func checkAlive(_ path: String?) throws {
        if dead { throw SimulatedState.crashError(path) }
    }

    func checkHandle(_ file: SimulatedFile) throws {
        if file.closed.load(ordering: .acquiring) {
            throw LedgerError(.closed, "file is closed", path: file.path)
        }
        try checkAlive(file.path)
        guard file.epoch == epoch, inodes[file.inode] != nil else {
            throw SimulatedState.error("file handle from before a simulated crash", path: file.path, errno: EBADF)
        }
    }

    /// Every mutating operation passes here first: a dead process refuses it, an
    /// armed crash may kill the process now, an injected fault may fail it.
    mutating func gate(_ kind: SimulatedStorage.OperationKind, path: String) -> Gate {
        if dead { return .dead }
        if let budget = crashBudget {
            if budget == 0 {
                dead = true
                crashBudget = nil
                return .killed
            }
            crashBudget = budget - 1
        }
        operationCount += 1
        kindCounts[kind, default: 0] += 1
        var index = 0
        while index < faults.count {
            let fault = faults[index]
            if fault.kind == kind, fault.pathContaining.map({ path.contains($0) }) ?? true {
                if fault.skip > 0 {
                    faults[index].skip -= 1
                } else {
                    if !fault.repeating { faults.remove(at: index) }
                    faultsFired += 1
                    return .fault(fault.errno)
                }
            }
            index += 1
        }
        return .proceed
    }

    func inodeID(_ normalized: String) -> Int? {
        guard normalized != "/" else { return nil }
        return directories[SimulatedPath.parent(normalized)]?.current[SimulatedPath.name(normalized)]
    }

    mutating func newInode() -> Int {
        nextInode += 1
        inodes[nextInode] = SimulatedInode()
        return nextInode
    }

    mutating func changeEntries(_ directory: String, _ changes: [SimulatedEntryChange]) {
        for change in changes { directories[directory]!.current[change.name] = change.inode }
        directories[directory]!.pending.append(changes)
    }

    mutating func pendingWrite(_ inode: Int, offset: Int, bytes: [UInt8]) {
        let change = SimulatedChange.write(offset: offset, bytes: bytes)
        change.apply(to: &inodes[inode]!.current)
        inodes[inode]!.pending.append(SimulatedPendingChange(change: change))
    }

    mutating func restart() {
        epoch += 1
        dead = false
        crashBudget = nil
        faults.removeAll()
        locks.removeAll()
    }

    // MARK: Power loss

    mutating func powerLoss() -> SimulatedStorage.CrashSummary {
        var summary = SimulatedStorage.CrashSummary()
        // Files, in inode order so the random stream is deterministic.
        for id in inodes.keys.sorted() {
            var inode = inodes[id]!
            var disk = inode.durable
            for entry in inode.pending {
                switch entry.change {
                case .truncate:
                    if random.chance(1, in: 2) {
                        entry.change.apply(to: &disk)
                        summary.truncationsKept += 1
                    } else {
                        summary.truncationsDropped += 1
                    }
                case .write(let offset, let bytes):
                    resolveWrite(offset: offset, bytes: bytes, disk: &disk, summary: &summary)
                }
            }
            inode.durable = disk
            inode.current = disk
            inode.pending.removeAll()
            inode.unwrittenPages.removeAll()
            inodes[id] = inode
        }
        // Directories, in path order.
        for path in directories.keys.sorted() {
            var directory = directories[path]!
            let keep = options.directoryOperationsMayPersist ? random.int(in: 0...directory.pending.count) : 0
            for operation in directory.pending.prefix(keep) {
                for change in operation { directory.durable[change.name] = change.inode }
            }
            summary.directoryOperationsKept += keep
            summary.directoryOperationsReverted += directory.pending.count - keep
            directory.pending.removeAll()
            directory.current = directory.durable
            directories[path] = directory
        }
        // Inodes no entry references are gone.
        var referenced = Set<Int>()
        for directory in directories.values { referenced.formUnion(directory.current.values) }
        for id in inodes.keys where !referenced.contains(id) {
            inodes[id] = nil
            summary.inodesRemoved += 1
        }
        summary.writesLost = writesLost
        writesLost = 0
        restart()
        return summary
    }

    /// One pending write meets the power loss: kept, dropped, torn or garbled.
    private mutating func resolveWrite(
        offset: Int, bytes: [UInt8], disk: inout [UInt8], summary: inout SimulatedStorage.CrashSummary
    ) {
        let weights = options.weights
        var roll = random.int(below: max(1, weights.total))
        func take(_ weight: Int) -> Bool {
            if roll < weight { return true }
            roll -= weight
            return false
        }
        if bytes.isEmpty || take(weights.keep) {
            SimulatedChange.write(offset: offset, bytes: bytes).apply(to: &disk)
            summary.writesKept += 1
        } else if take(weights.drop) {
            summary.writesDropped += 1
        } else if take(weights.tearPrefix) {
            let kept = random.int(in: 0...(bytes.count - 1))
            if kept > 0 { SimulatedChange.write(offset: offset, bytes: Array(bytes[0..<kept])).apply(to: &disk) }
            summary.writesTorn += 1
        } else if take(weights.tearSectors) {
            // Sectors are aligned to the file, not to the write.
            let sector = max(1, options.sectorBytes)
            var start = offset
            let end = offset + bytes.count
            while start < end {
                let sectorEnd = min(end, (start / sector + 1) * sector)
                if random.chance(1, in: 2) {
                    SimulatedChange.write(offset: start, bytes: Array(bytes[(start - offset)..<(sectorEnd - offset)]))
                        .apply(to: &disk)
                }
                start = sectorEnd
            }
            summary.writesTorn += 1
        } else {
            // Garbled: random bytes over part of the range; the rest new or old.
            let lower = random.int(in: 0...(bytes.count - 1))
            let upper = random.int(in: (lower + 1)...bytes.count)
            if random.chance(1, in: 2) { SimulatedChange.write(offset: offset, bytes: bytes).apply(to: &disk) }
            SimulatedChange.write(offset: offset + lower, bytes: random.bytes(upper - lower)).apply(to: &disk)
            summary.writesGarbled += 1
        }
    }
}
