import OnceLedgerFormat
import OnceLedgerLog

extension LedgerStore {
    /// `memoGet` once per key: what every store can do (a store that can answer many keys in
    /// one go, as `LogStore` does, overrides it).
    public func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?] {
        var values: [MemoValue?] = []
        values.reserveCapacity(keys.count)
        for key in keys { values.append(try await memoGet(key)) }
        return values
    }
}

extension LogStore {
    /// Every key looked up under one lock; the values on disk are then read outside it.
    /// Values whose records lie close together in one segment (a run's journal, written in
    /// order) are read with one `pread` of their span (`RecordReader.readParts`, which checks
    /// every record's frame and checksum in that buffer); any other value with one `pread`
    /// of its own (from the page cache when the run was read or written recently).
    public func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?] {
        if isClosed { throw LedgerError(.closed, "the ledger is closed") }
        let reads = try memo.withLock { table in try table.readMany(keys) }
        var bytes = [[UInt8]?](repeating: nil, count: keys.count)
        var index = 0
        while index < reads.count {
            guard let read = reads[index] else {
                index += 1
                continue
            }
            // The run of following reads in the same segment, each starting at or after the
            // end of the one before, with a span at most `bulkReadBytesMax` that is mostly theirs.
            guard case .located(let first, _) = read.value, !first.isSnapshot, let (reader, file) = read.onDisk else {
                bytes[index] = try read.finish(keys[index])
                index += 1
                continue
            }
            var locations = [first]
            var used = first.readBytes
            var end = first.offset + UInt64(first.readBytes)
            var next = index + 1
            while next < reads.count, let following = reads[next], case .located(let location, _) = following.value,
                  location.file == first.file, location.offset >= end,
                  location.offset + UInt64(location.readBytes) - first.offset <= UInt64(Self.bulkReadBytesMax) {
                let span = Int(location.offset + UInt64(location.readBytes) - first.offset)
                guard (used + location.readBytes) * 2 >= span else { break }
                locations.append(location)
                used += location.readBytes
                end = location.offset + UInt64(location.readBytes)
                next += 1
            }
            if locations.count == 1 {
                bytes[index] = try read.finish(keys[index])
            } else {
                let parts = try reader.readParts(locations, from: file) { offset, kind, raw in
                    try MemoTable.Read.valueRange(of: keys[index + offset], kind: kind, raw,
                                                  location: locations[offset], reader: reader)
                }
                for (offset, part) in parts.enumerated() { bytes[index + offset] = part }
            }
            index = next
        }
        // (Not offered to the value cache: a replay reads each position once.)
        return zip(keys, zip(reads, bytes)).map { key, pair in
            guard let read = pair.0, let value = pair.1 else { return nil }
            return MemoValue(key: key, inputDigest: read.inputDigest, timeMilliseconds: read.timeMilliseconds, bytes: value)
        }
    }

    /// The largest span `memoGetMany` reads with one `pread`.
    static var bulkReadBytesMax: Int { 1 << 20 }
}
