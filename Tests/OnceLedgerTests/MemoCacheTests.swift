// Proves the memo's value cache (`MemoTable.remember`) answers hits without changing what a get
// returns: a value on disk read once is kept (the cache grows by its bytes) and a second get
// returns it; a put that replaces it, a sweep that removes it and a compaction that moves it each
// drop the cached copy (the next get reads the new value, nothing, or the value from its new
// place); a read that finishes after its entry was replaced does not fill the cache with the old
// value. Real files in a temporary directory.
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Testing
@_spi(Benchmarks) @testable import OnceLedger

@Suite struct MemoCacheTests {
    static func cached(_ ledger: Ledger) -> Int { ledger.logStore?.memo.withLock { $0.cachedValueBytes } ?? -1 }

    @Test func hitsComeFromTheCacheAndEveryChangeDropsTheCachedCopy() async throws {
        let directory = ValuesOnDiskTests.temporaryDirectory("memo-cache")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        defer { try? ledger.close() }
        let memo = try await ledger.memo(run: "run-1", step: "s")
        let first = [UInt8](repeating: 1, count: 3_000), second = [UInt8](repeating: 2, count: 1_000)
        try await memo.put("v", bytes: first)
        #expect(Self.cached(ledger) == 0, "a put does not fill the cache")
        #expect(try await memo.bytes("v") == first)
        #expect(Self.cached(ledger) == first.count, "a read from disk fills it")
        #expect(try await memo.bytes("v") == first)

        try await memo.put("v", bytes: second)
        #expect(Self.cached(ledger) == 0, "a put that replaces the value drops the cached copy")
        #expect(try await memo.bytes("v") == second)
        #expect(Self.cached(ledger) == second.count)

        try await ledger.compact()
        #expect(Self.cached(ledger) == 0, "a compaction that moves the value drops the cached copy")
        #expect(try await memo.bytes("v") == second)
        #expect(MemoValuesOnDiskTests.location(ledger, memo.key("v"))?.isSnapshot == true)

        // A read prepared before a put replaced the value finishes after it: the old bytes
        // are not cached for the new value.
        try await ledger.compact()
        let stale = try #require(try ledger.logStore?.memo.withLock { table in try table.read(memo.key("v")) })
        let (entry, location) = try #require(stale.cacheable)
        try await memo.put("v", bytes: first)
        ledger.logStore?.memo.withLock { $0.remember(entry, location: location, bytes: second) }
        #expect(Self.cached(ledger) == 0, "a stale read does not fill the cache")
        #expect(try await memo.bytes("v") == first)

        try await ledger.finishRun("run-1", status: .succeeded)
        try await ledger.sweepMemo(now: .max, retention: MemoRetention(.zero))
        #expect(Self.cached(ledger) == 0, "a sweep drops the cached copies of the run's values")
        #expect(try await ledger.runs(run: "run-1").isEmpty)
    }
}
