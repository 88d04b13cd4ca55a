import Glibc
// The root package's C helpers (O_DIRECT, pwritev2 RWF_DSYNC). Not a product of it: the
// module is visible here because OnceLedgerLog, which this package depends on, uses it.
import COnceSupport
import OnceLedgerFormat

/// The physical limit the engine is measured against: one `pwrite` of a
/// record-sized buffer plus one `fdatasync`, in a loop, on a preallocated
/// zero-filled file (the same write pattern as one appender on a segment).
/// Blocking: use it from a dedicated thread.
///
/// With `direct`, a diagnostic: the same records, each written as the 4 KiB
/// block(s) holding it through an `O_DIRECT` descriptor with `pwritev2(RWF_DSYNC)`
/// (the write and its `fdatasync` in one call; the two calls where the kernel lacks
/// it). It shows what the device does with direct block writes, next to the
/// plain loop's writes through the page cache.
final class RawSyncLoop: @unchecked Sendable {
    static let fileBytes = 16 << 20
    static let blockBytes = 4096

    let path: String
    let recordBytes: Int
    let direct: Bool
    private let fd: Int32
    private var offset = 0
    /// False once `pwritev2(RWF_DSYNC)` was refused: the direct loop then writes and syncs in two calls.
    private(set) var dataSyncWrites = true

    /// Creates the file and fills it with real zeros (not a sparse hole), durably, like a segment.
    init(directory: String, recordBytes: Int, direct: Bool = false) throws {
        path = directory + (direct ? "/raw-sync-direct.bin" : "/raw-sync.bin")
        self.recordBytes = recordBytes
        self.direct = direct
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchError("cannot create \(path): \(String(cString: strerror(errno)))") }
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var written = 0
        while written < RawSyncLoop.fileBytes {
            try RawSyncLoop.writeAll(fd, zeros, at: written, path: path)
            written += zeros.count
        }
        guard fsync(fd) == 0 else { throw BenchError("fsync \(path): \(String(cString: strerror(errno)))") }
        RawSyncLoop.syncDirectory(directory)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Loops pwrite+fdatasync until `seconds` have passed (after a short warm-up).
    func run(seconds: Double, warmupOperations: Int = 10) throws -> BenchResults.Rate {
        let record = [UInt8](repeating: 0xA5, count: recordBytes)
        let block = RawSyncLoop.blockBytes
        let writer: Int32
        if direct {
            writer = open(path, O_RDWR | O_CLOEXEC | ol_open_direct_flag())
            guard writer >= 0 else { throw BenchError("cannot open \(path) with O_DIRECT: \(String(cString: strerror(errno)))") }
        } else {
            writer = fd
        }
        defer { if direct { close(writer) } }
        let blocks = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * block, alignment: block)
        defer { blocks.deallocate() }
        blocks.initializeMemory(as: UInt8.self, repeating: 0xA5)
        func step() throws {
            if direct {
                let start = offset / block * block
                let end = (offset + recordBytes + block - 1) / block * block
                var synced = dataSyncWrites
                var n = synced ? ol_pwrite_dsync(writer, blocks.baseAddress, end - start, Int64(start)) : -1
                if synced && n < 0 && (errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL) {
                    dataSyncWrites = false
                    synced = false
                }
                if !synced { n = pwrite(writer, blocks.baseAddress, end - start, off_t(start)) }
                guard n == end - start else { throw BenchError("O_DIRECT pwrite \(path): \(String(cString: strerror(errno)))") }
                if !synced {
                    guard fdatasync(writer) == 0 else { throw BenchError("fdatasync \(path): \(String(cString: strerror(errno)))") }
                }
            } else {
                try RawSyncLoop.writeAll(fd, record, at: offset, path: path)
                guard fdatasync(writer) == 0 else { throw BenchError("fdatasync \(path): \(String(cString: strerror(errno)))") }
            }
            offset += recordBytes
            if offset + recordBytes + block > RawSyncLoop.fileBytes { offset = 0 }
        }
        for _ in 0..<warmupOperations { try step() }
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        let clock = MonotonicClock()
        var operations = 0
        repeat {
            try step()
            operations += 1
        } while MonotonicClock.nanoseconds() < deadline
        return BenchResults.Rate(operations: operations, seconds: clock.elapsedSeconds)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws {
        var done = 0
        try bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                if n > 0 {
                    done += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    throw BenchError("pwrite \(path): \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
