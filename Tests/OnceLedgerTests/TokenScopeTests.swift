// Proves effect tokens are unique per ledger and never change for an entry that exists
// (Spec/FORMAT.md §9.3): two fresh ledgers (file and in-memory) give one key different
// tokens; a pending entry retried after a reopen gets the token its first attempt got; and
// a ledger written by format version 1 (made here by stamping a new ledger's only segment
// header with version 1 and no flags, which is byte for byte what version 1 wrote) keeps v1
// tokens after reopening, rolling over and compacting, while the new segment and snapshot
// headers carry the flag unset.
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing
import OnceLedgerStoreContract

@Suite struct TokenScopeTests {
    static func temporaryDirectory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.path + "/ol-token-\(name)-\(UUID().uuidString.prefix(8))"
    }

    /// Runs `key` once and returns the token its effect received.
    static func tokenOfFirstRun(_ ledger: Ledger, _ key: String) async throws -> String {
        let seen = Mutex<String?>(nil)
        _ = try await ledger.once(IdempotencyKey(key), as: String.self) { context in
            seen.withLock { $0 = context.token }
            return "ok"
        }
        return try #require(seen.withLock { $0 })
    }

    @Test func twoFreshLedgersGiveOneKeyDifferentTokens() async throws {
        let first = Self.temporaryDirectory("a")
        let second = Self.temporaryDirectory("b")
        defer {
            try? FileManager.default.removeItem(atPath: first)
            try? FileManager.default.removeItem(atPath: second)
        }
        let a = try Ledger.open(directory: first)
        let b = try Ledger.open(directory: second)
        let tokenA = try await Self.tokenOfFirstRun(a, "order-42")
        let tokenB = try await Self.tokenOfFirstRun(b, "order-42")
        #expect(tokenA != tokenB, "staging and production must not de-duplicate each other's effects")
        #expect(a.tokenScope.isLedgerScoped && b.tokenScope.isLedgerScoped)
        #expect(tokenA != EffectToken.derive(key: "order-42", generation: 0, scope: .unscoped))
        #expect(try await a.entry("order-42")?.token == tokenA)
        try a.close()
        try b.close()

        let memoryA = Ledger.inMemory()
        let memoryB = Ledger.inMemory()
        let tokenMA = try await Self.tokenOfFirstRun(memoryA, "order-42")
        let tokenMB = try await Self.tokenOfFirstRun(memoryB, "order-42")
        #expect(tokenMA != tokenMB, "in-memory ledgers have random ids too")
    }

    @Test func retryOfAPendingEntryKeepsItsTokenAcrossReopen() async throws {
        let directory = Self.temporaryDirectory("retry")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var ledger = try Ledger.open(directory: directory)
        let firstToken = Mutex<String?>(nil)
        let failure = await ledgerError {
            try await ledger.once("charge-7", as: String.self) { context in
                firstToken.withLock { $0 = context.token }
                throw TestFailure()
            }
        }
        #expect(failure?.code == .effectFailed)
        let token = try #require(firstToken.withLock { $0 })
        try ledger.close()

        ledger = try Ledger.open(directory: directory)
        defer { try? ledger.close() }
        #expect(try await ledger.entry("charge-7")?.status == .pendingUnknown)
        #expect(try await ledger.entry("charge-7")?.token == token)
        let outcome = try await ledger.once("charge-7", as: String.self, whenPending: .retry) { context in
            #expect(context.token == token, "the downstream must see the same idempotency key")
            #expect(context.attempt == 2)
            return context.token
        }
        #expect(outcome.receipt == token)
    }

    /// Stamps a segment header with format version 1 and no flags (and its checksum).
    static func makeVersionOne(_ path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[8] = 1
        bytes[9] = 0
        for index in 12..<16 { bytes[index] = 0 }
        let crc = CRC32.checksum(Array(bytes[0..<60]))
        withUnsafeBytes(of: crc.littleEndian) { for index in 0..<4 { bytes[60 + index] = $0[index] } }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func header(_ path: String) throws -> SegmentHeader {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)).prefix(64))
        guard case .header(let header) = SegmentHeader.decode(bytes) else {
            throw LedgerError(.corruptSegmentHeader, "test: no header", path: path)
        }
        return header
    }

    @Test func aVersionOneLedgerKeepsV1TokensThroughReopenRolloverAndCompaction() async throws {
        let directory = Self.temporaryDirectory("v1")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = LogConfiguration(segmentBytes: 4096)
        var ledger = try Ledger.open(directory: directory, configuration: configuration)
        let failure = await ledgerError {
            try await ledger.once("legacy", as: String.self) { _ in throw TestFailure() }
        }
        #expect(failure?.code == .effectFailed)
        try ledger.close()
        let segment1 = directory + "/" + LedgerFileNames.segment(1)
        try Self.makeVersionOne(segment1)
        #expect(try Self.header(segment1).formatVersion == 1)

        let v1 = EffectToken.derive(key: "legacy", generation: 0, scope: .unscoped)
        ledger = try Ledger.open(directory: directory, configuration: configuration)
        #expect(ledger.tokenScope == .unscoped, "the scheme comes from the ledger's headers")
        #expect(try await ledger.entry("legacy")?.token == v1)
        // Enough keys to roll over into new segments, then a compaction.
        for index in 0..<60 {
            let token = try await Self.tokenOfFirstRun(ledger, "key-\(index)")
            #expect(token == EffectToken.derive(key: "key-\(index)", generation: 0, scope: .unscoped))
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        let numbers = names.compactMap(LedgerFileNames.parseSegment).sorted()
        #expect(numbers.count >= 2, "rolled over")
        let newest = try Self.header(directory + "/" + LedgerFileNames.segment(numbers.last!))
        #expect(newest.formatVersion == 2, "writers write version 2 segments")
        #expect(!newest.ledgerScopedTokens, "copied from the existing ledger")
        try await ledger.compact()
        try ledger.close()
        let snapshotName = try #require(try FileManager.default.contentsOfDirectory(atPath: directory)
            .first { LedgerFileNames.parseSnapshot($0) != nil })
        let snapshotBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + snapshotName)))
        guard case .snapshot(let snapshot) = SnapshotFile.decode(snapshotBytes) else {
            Issue.record("the snapshot does not decode")
            return
        }
        #expect(snapshot.formatVersion == FormatLimits.snapshotFormatVersion)
        #expect(!snapshot.ledgerScopedTokens)

        ledger = try Ledger.open(directory: directory, configuration: configuration)
        defer { try? ledger.close() }
        #expect(ledger.tokenScope == .unscoped)
        #expect(try await ledger.entry("legacy")?.token == v1)
        let retried = try await ledger.once("legacy", as: String.self, whenPending: .retry) { context in
            #expect(context.token == v1, "a pending entry from the old version keeps its token")
            return context.token
        }
        #expect(retried.receipt == v1)
    }
}
