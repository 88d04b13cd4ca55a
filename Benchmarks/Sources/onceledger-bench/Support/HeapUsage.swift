import Glibc

/// How much memory the process holds, two ways, for the benchmark's
/// memory-per-entry row:
///
/// - `heapInUseBytes`: bytes in allocated malloc chunks (chunk headers included),
///   summed over every malloc arena, plus mmap'd large blocks. This is what
///   glibc's `mallinfo2()` reports as `uordblks + hblkhd`; it is computed from
///   `malloc_info(3)`'s totals (system − free fast − free rest + mmap) because
///   neither `mallinfo2` nor `malloc_trim` is exported by Swift's Glibc module,
///   and `malloc_info` takes only an int and a `FILE *` (a clean C call through
///   `dlsym`). Exact, and independent of memory freed earlier in the process.
/// - `residentBytes`: resident set size from `/proc/self/statm` (field 2 × page
///   size). Includes allocator slack and is lowered by reuse of freed memory, so
///   it is reported next to the heap figure, not instead of it.
enum HeapUsage {
    private typealias MallocInfo = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32
    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// nil when the C library has no `malloc_info` (not glibc).
    static func heapInUseBytes() -> Int? {
        guard let symbol = dlsym(nil, "malloc_info") else { return nil }
        let mallocInfo = unsafeBitCast(symbol, to: MallocInfo.self)
        var buffer: UnsafeMutablePointer<CChar>?
        var size = 0
        guard let stream = open_memstream(&buffer, &size) else { return nil }
        let code = mallocInfo(0, stream)
        fclose(stream)
        defer { free(buffer) }
        guard code == 0, let buffer else { return nil }
        return parseTotals(String(cString: buffer))
    }

    /// The whole-process totals that follow the last `</heap>` of `malloc_info`'s XML.
    static func parseTotals(_ xml: String) -> Int? {
        guard let lastHeap = xml.range(of: "</heap>", options: .backwards) else { return nil }
        let tail = xml[lastHeap.upperBound...]
        func value(_ element: String, _ type: String) -> Int? {
            guard let start = tail.range(of: "<\(element) type=\"\(type)\"") else { return nil }
            guard let sizeStart = tail[start.upperBound...].range(of: "size=\"") else { return nil }
            let digits = tail[sizeStart.upperBound...].prefix { $0.isNumber }
            return Int(digits)
        }
        guard let system = value("system", "current"), let fast = value("total", "fast"),
              let rest = value("total", "rest"), let mmapped = value("total", "mmap")
        else { return nil }
        return system - fast - rest + mmapped
    }

    static func residentBytes() -> Int? {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 256)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return nil }
        let fields = String(decoding: bytes[0..<count], as: UTF8.self).split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Resets the process's peak resident set size (`VmHWM`) to its current one
    /// (`echo 5 > /proc/self/clear_refs`, Linux ≥ 4.0). False if the kernel refused.
    @discardableResult
    static func resetPeakResident() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    /// The process's peak resident set size (`VmHWM` in `/proc/self/status`).
    static func peakResidentBytes() -> Int? {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16384)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return nil }
        let status = String(decoding: bytes[0..<count], as: UTF8.self)
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kilobytes = Int(fields[1]) else { return nil }
            return kilobytes * 1024
        }
        return nil
    }

    /// Returns free heap memory to the kernel (`malloc_trim(0)`), so that a
    /// following resident-size sample starts from a tight baseline.
    static func trim() {
        guard let symbol = dlsym(nil, "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
    }
}

/// The process's resident set and its high-water mark (`/proc/self/status`, Linux), and a
/// reset of the mark (`/proc/self/clear_refs`), so a step's peak can be read: reset, run it,
/// read the mark. nil where the files are not there.
enum PeakResidentSet {
    static func reset() -> Bool {
        guard let file = fopen("/proc/self/clear_refs", "w") else { return false }
        defer { fclose(file) }
        return fputs("5", file) >= 0
    }

    /// (current, high-water mark) in bytes.
    static func read() -> (current: Int, peak: Int)? {
        // Read line by line: the file reports a size of 0, so reading it whole finds nothing.
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 512)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            lines.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        func kilobytes(_ field: String) -> Int? {
            guard let line = lines.first(where: { $0.hasPrefix(field + ":") }) else { return nil }
            return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        guard let current = kilobytes("VmRSS"), let peak = kilobytes("VmHWM") else { return nil }
        return (current * 1024, peak * 1024)
    }
}
