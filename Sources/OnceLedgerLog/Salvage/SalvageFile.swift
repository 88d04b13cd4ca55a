import Glibc
import OnceLedgerFormat

/// One file of a damaged ledger, as salvage reads it: never whole, never blocking.
///
/// - Opened read-only with `O_NONBLOCK`, then refused unless it is a regular file: a FIFO
///   or device named like a segment must not hang salvage or feed it endless bytes.
/// - Read with `pread` in windows (`SalvageWindow`), so a file of any size costs a bounded
///   amount of memory.
/// - Its data extents are found with `lseek(SEEK_DATA/SalvageFile.seekHole)`: a sparse file (a segment
///   extended to many GiB with `truncate`) costs only the bytes it really holds. A hole reads
///   as zeros, and no record starts in zeros, so nothing is missed by skipping it.
final class SalvageFile {
    /// Why a file could not be opened or read, for the report.
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    let size: UInt64
    private let descriptor: Int32
    /// Whether `lseek(SalvageFile.seekData)` works here; if not, the whole file counts as data.
    private var extentsKnown = true

    init(path: String) throws(Problem) {
        self.path = path
        var descriptor: Int32
        repeat {
            descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else { throw Problem(description: "cannot open: \(SalvageFile.errorText(errno))") }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let error = errno
            close(descriptor)
            throw Problem(description: "cannot stat: \(SalvageFile.errorText(error))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw Problem(description: "not a regular file (\(SalvageFile.kind(info.st_mode)))")
        }
        self.descriptor = descriptor
        self.size = UInt64(max(0, info.st_size))
    }

    deinit { close(descriptor) }

    /// Up to `count` bytes at `offset` (fewer only at the end of the file).
    func read(at offset: UInt64, count: Int) throws(Problem) -> [UInt8] {
        guard offset < size, count > 0 else { return [] }
        let wanted = Int(min(UInt64(count), size - offset))
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: wanted) { buffer, initialized in
            var done = 0
            while done < wanted {
                let n = pread(descriptor, buffer.baseAddress! + done, wanted - done, off_t(offset) + off_t(done))
                if n > 0 { done += n; continue }
                if n == 0 { break }
                if errno == EINTR { continue }
                failure = errno
                break
            }
            initialized = done
        }
        if failure != 0 {
            throw Problem(description: "read failed at offset \(offset + UInt64(bytes.count)): \(SalvageFile.errorText(failure))")
        }
        return bytes
    }

    /// The start of the first data extent at or after `offset`, or nil when only a hole
    /// (or nothing) follows it.
    func dataStart(atOrAfter offset: UInt64) -> UInt64? {
        guard offset < size else { return nil }
        guard extentsKnown else { return offset }
        let found = lseek(descriptor, off_t(offset), SalvageFile.seekData)
        if found >= 0 { return UInt64(found) < size ? UInt64(found) : nil }
        if errno == ENXIO { return nil }
        extentsKnown = false  // EINVAL: the file system cannot tell; read everything
        return offset
    }

    /// The end of the data extent that holds `offset` (the next hole, or the file's end).
    func dataEnd(from offset: UInt64) -> UInt64 {
        guard extentsKnown else { return size }
        let found = lseek(descriptor, off_t(offset), SalvageFile.seekHole)
        guard found >= 0 else { return size }
        return min(size, UInt64(found))
    }

    // Linux's `lseek` whences; Glibc exports them only under _GNU_SOURCE, which Swift does not set.
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    static func errorText(_ code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }

    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "type \(String(mode & S_IFMT, radix: 8))"
        }
    }
}

/// A window of a `SalvageFile`'s bytes, moved along as a scan goes: `ensure` loads the
/// bytes a decode needs (a record header, then its whole frame), reading ahead in chunks.
struct SalvageWindow {
    let file: SalvageFile
    /// File offset of `bytes[0]`.
    private(set) var base: UInt64 = 0
    private(set) var bytes: [UInt8] = []
    static let chunkBytes = 4 << 20

    init(_ file: SalvageFile) { self.file = file }

    /// Makes `file[offset ..< offset + count]` (cut at the end of the file) available in
    /// `bytes`, at index `offset - base`. Returns how many of the `count` bytes exist.
    @discardableResult
    mutating func ensure(_ offset: UInt64, _ count: Int) throws(SalvageFile.Problem) -> Int {
        let available = Int(min(UInt64(count), file.size > offset ? file.size - offset : 0))
        if offset >= base, offset + UInt64(available) <= base + UInt64(bytes.count) { return available }
        base = offset
        bytes = try file.read(at: offset, count: max(available, SalvageWindow.chunkBytes))
        return min(available, bytes.count)
    }

    /// The little-endian u64 at `offset` (which `ensure` made available).
    func word(at offset: UInt64) -> UInt64 {
        bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: Int(offset - base), as: UInt64.self)) }
    }
}
