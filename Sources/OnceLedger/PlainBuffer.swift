#if !os(Linux)
#error("OnceLedger supports Linux (glibc) only: the ledger's tables rely on glibc's malloc (realloc moves large blocks with mremap).")
#endif
import Glibc
import COnceSupport

/// A growable array of plain values in one `malloc`'d block, for `LedgerState`'s
/// million-entry tables. Unlike `Array` it grows with `realloc` — for a large block
/// glibc moves the pages (`mremap`) instead of copying them — by half rather than
/// doubling, and asks for transparent huge pages once large, since a replay touches
/// these tables at random. Noncopyable: one owner, freed in `deinit`.
///
/// Indices come from the ledger's own bookkeeping, never from disk; out-of-range
/// access is a programming error and traps.
struct PlainBuffer<Element: BitwiseCopyable>: ~Copyable {
    private(set) var base: UnsafeMutablePointer<Element>?
    private(set) var count = 0
    private(set) var capacity = 0

    init() {}

    /// `count` zeroed elements (`calloc`: large blocks come as untouched zero pages).
    init(zeroed count: Int) {
        guard count > 0 else { return }
        base = PlainBuffer.checked(calloc(count, MemoryLayout<Element>.stride), count: count)
        self.count = count
        capacity = count
        ol_advise_huge_pages(base, count * MemoryLayout<Element>.stride)
    }

    /// `init(zeroed:)`, or nil when the memory is not there (for sizes that come from
    /// a hint, such as a snapshot's item count, rather than from data already held).
    init?(zeroedIfAvailable count: Int) {
        guard count > 0 else { return nil }
        guard let pointer = calloc(count, MemoryLayout<Element>.stride) else { return nil }
        base = pointer.bindMemory(to: Element.self, capacity: count)
        self.count = count
        capacity = count
        ol_advise_huge_pages(base, count * MemoryLayout<Element>.stride)
    }

    deinit { free(base) }

    subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < count, "index out of range")
            return base.unsafelyUnwrapped[index]
        }
        set {
            precondition(index >= 0 && index < count, "index out of range")
            base.unsafelyUnwrapped[index] = newValue
        }
    }

    /// Makes room for `adding` more elements, growing by half when full.
    mutating func reserve(adding: Int) {
        let needed = count + adding
        guard needed > capacity else { return }
        let grown = max(needed, capacity + capacity / 2, 64)
        let bytes = grown * MemoryLayout<Element>.stride
        base = PlainBuffer.checked(realloc(base, bytes), count: grown)
        capacity = grown
        ol_advise_huge_pages(base, bytes)
    }

    /// Makes room for exactly `adding` more elements if the memory is there; returns
    /// false (the buffer unchanged) when it is not. For capacity hints.
    mutating func reserveIfAvailable(adding: Int) -> Bool {
        let needed = count + adding
        guard needed > capacity else { return true }
        let (bytes, overflow) = needed.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow, let grown = realloc(base, bytes) else { return false }
        base = grown.bindMemory(to: Element.self, capacity: needed)
        capacity = needed
        ol_advise_huge_pages(base, bytes)
        return true
    }

    /// Empties the buffer, keeping its memory.
    mutating func removeAll() { count = 0 }

    /// A buffer of the same elements (one `memcpy`; capacity just the count).
    func copy() -> PlainBuffer<Element> {
        var copy = PlainBuffer<Element>()
        copy.append(contentsOf: rawBytes(from: 0, count: count))
        return copy
    }

    mutating func append(_ element: Element) {
        reserve(adding: 1)
        base.unsafelyUnwrapped[count] = element
        count += 1
    }

    /// Appends `bytes` reinterpreted as elements (for byte buffers).
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count % MemoryLayout<Element>.stride == 0, "partial element")
        let added = bytes.count / MemoryLayout<Element>.stride
        guard added > 0, let source = bytes.baseAddress else { return }
        reserve(adding: added)
        UnsafeMutableRawPointer(base.unsafelyUnwrapped + count).copyMemory(from: source, byteCount: bytes.count)
        count += added
    }

    /// Appends `added` zeroed elements and returns the index of the first.
    mutating func appendZeros(_ added: Int) -> Int {
        let start = count
        reserve(adding: added)
        if added > 0 { UnsafeMutableRawPointer(base.unsafelyUnwrapped + count).initializeMemory(as: UInt8.self, repeating: 0, count: added * MemoryLayout<Element>.stride) }
        count += added
        return start
    }

    /// Bytes `offset ..< offset + length` (in elements) as a raw buffer, valid while
    /// the buffer is neither grown nor freed.
    func rawBytes(from offset: Int, count length: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "range out of bounds")
        guard length > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base.unsafelyUnwrapped + offset, count: length * MemoryLayout<Element>.stride)
    }

    func mutableRawBytes(from offset: Int, count length: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(mutating: rawBytes(from: offset, count: length))
    }

    private static func checked(_ pointer: UnsafeMutableRawPointer?, count: Int) -> UnsafeMutablePointer<Element> {
        // Out of memory: Swift's own allocations trap too; nothing sensible can go on.
        guard let pointer else { fatalError("cannot allocate \(count) × \(MemoryLayout<Element>.stride) bytes") }
        return pointer.bindMemory(to: Element.self, capacity: count)
    }
}
