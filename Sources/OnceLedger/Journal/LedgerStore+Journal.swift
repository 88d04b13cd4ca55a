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
    /// Every key looked up under one lock; the values on disk are then read outside it (one
    /// `pread` each, from the page cache when the run was read or written recently).
    public func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?] {
        if isClosed { throw LedgerError(.closed, "the ledger is closed") }
        let reads = try memo.withLock { table in try keys.map { try table.read($0) } }
        var values: [MemoValue?] = []
        values.reserveCapacity(keys.count)
        for (key, read) in zip(keys, reads) {
            guard let read else {
                values.append(nil)
                continue
            }
            let slot = read.slot
            values.append(MemoValue(
                key: key, inputDigest: slot.inputDigest == RecordBody.noInputDigest ? nil : slot.inputDigest,
                timeMilliseconds: slot.timeMilliseconds, bytes: try read.finish()))
        }
        return values
    }
}
