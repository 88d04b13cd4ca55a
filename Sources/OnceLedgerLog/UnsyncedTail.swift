import OnceLedgerFormat

/// Bytes at the end of the last segment that the page cache shows but the device does
/// not hold: a writer's open writes them back as the device holds them; a read-only
/// inspection (`onceledger verify`) reports them (`Spec/RECOVERY.md` §4.1).
///
/// After a failed `fsync` Linux marks the pages it could not write clean: reads still
/// show them, no later `fsync` writes them, and only a power loss or an eviction makes
/// them go. The writer that saw the failure is poisoned and appends nothing more, but a
/// process that reopens the ledger in the same boot would read those records back, vouch
/// for them (acked-through), and chain what it appends to bytes the disk never got: after
/// a power loss the records appended later, acknowledged, would sit behind a gap.
public struct UnsyncedTail: Sendable, Hashable {
    public var segment: UInt64
    public var path: String
    /// The first byte the device does not hold as the page cache showed it.
    public var offset: UInt64
    /// One past the last byte written back (a 4 KiB boundary, or the segment's end).
    public var endOffset: UInt64
    /// Where the last valid record ended in the page cache, before the write-back.
    public var cachedEndOffset: UInt64
    /// Whether the device's bytes were written back (a writer's open), or only found (a
    /// read-only scan, which leaves them for the next open).
    public var repaired: Bool

    /// What a scan does about the last segment's unvouched records.
    public enum Mode: Sendable {
        /// Nothing (tools that must read exactly what is in the page cache).
        case ignore
        /// Compare them with the device and report a difference; write nothing.
        case report
        /// Compare, and write the device's bytes back where they differ (a writer's open).
        case repair
    }

    static let pageBytes = 4096

    /// Where the records of the last segment that no successful sync vouched for begin:
    /// the first valid record whose sequence number is above the acked-through of the
    /// group it belongs to (every record of one commit write carries the same acked-through,
    /// the last sequence number durable before it), in the last such group; and where the
    /// valid records end. Nil when every valid record is vouched for.
    static func unvouched(_ bytes: [UInt8], ledgerID: LedgerID, segment: UInt64) -> (start: Int, end: Int)? {
        var groupAcked: UInt64?
        var start: Int?
        let walked = SegmentReader.walk(bytes, ledgerID: ledgerID, segment: segment) { record in
            let header = record.header
            if header.ackedThrough != groupAcked {
                groupAcked = header.ackedThrough
                start = nil
            }
            if start == nil, header.sequence > header.ackedThrough { start = Int(record.offset) }
            return true
        }
        guard let start else { return nil }
        return (start, Int(walked.offset))
    }

    /// Compares the unvouched records of the last segment (`bytes`, read through the page
    /// cache) with the device's copy of their pages. Where they differ, writes the device's
    /// bytes back over the page cache's from the first difference to the end of those
    /// pages, `fdatasync`s them, and puts them in `bytes`, so the scan that follows sees
    /// what a power loss would leave (the damaged record then ends the log as a torn tail).
    /// Rewriting bytes with the device's own copy cannot tear anything a crash would keep.
    /// Nil when the bytes agree, when every record is vouched for, or when the storage
    /// cannot read past its cache (`Storage.readFromDevice`). With `write` false, only finds
    /// the difference (`bytes` and the file stay as they were).
    static func reconcile(storage: any Storage, path: String, bytes: inout [UInt8], ledgerID: LedgerID,
                          segment: UInt64, write: Bool) throws -> UnsyncedTail? {
        guard let (start, end) = unvouched(bytes, ledgerID: ledgerID, segment: segment) else { return nil }
        let pageStart = start / pageBytes * pageBytes
        let pageEnd = min(bytes.count, (end + pageBytes - 1) / pageBytes * pageBytes)
        guard pageEnd > pageStart,
              let device = try storage.readFromDevice(path, at: UInt64(pageStart), count: pageEnd - pageStart)
        else { return nil }
        // The device may give fewer bytes only if the file is shorter there; those bytes
        // it does not hold read as zeros (what a crash that lost them leaves in a
        // preallocated segment). A report compares the records only: a live writer may
        // have appended after them since `bytes` was read.
        let compareEnd = write ? pageEnd : end
        var first: Int?
        for at in pageStart..<compareEnd {
            let index = at - pageStart
            if bytes[at] != (index < device.count ? device[index] : 0) {
                first = at
                break
            }
        }
        guard let first else { return nil }
        let found = UnsyncedTail(segment: segment, path: path, offset: UInt64(first), endOffset: UInt64(pageEnd),
                                 cachedEndOffset: UInt64(end), repaired: write)
        guard write else { return found }
        var replacement = [UInt8](repeating: 0, count: pageEnd - first)
        for at in first..<min(pageEnd, pageStart + device.count) { replacement[at - first] = device[at - pageStart] }
        let file = try storage.openFile(path, mode: .readWrite)
        defer { file.close() }
        try file.write(replacement, at: UInt64(first))
        try file.synchronizeData()
        bytes.replaceSubrange(first..<pageEnd, with: replacement)
        return found
    }
}
