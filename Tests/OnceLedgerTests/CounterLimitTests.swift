// Proves that an entry's 32-bit attempt and generation counters never overflow (`Spec/FORMAT.md`
// §9.1): a claim that would need attempt or generation 2^32 is refused with `limit-exceeded`
// and writes nothing, instead of trapping on the log's bytes or wrapping to a generation (and
// so a token) that was handed out before; a forget at the last generation is refused, and one
// written by hand leaves the generation where it was.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerLog
import OnceLedgerStoreContract
import OnceLedgerFormat
import Testing

@Suite struct CounterLimitTests {
    static let last = UInt32.max

    /// `body` throws `limit-exceeded` naming `limit`, for `key`.
    static func expectExhausted(_ limit: String, key: String, sourceLocation: SourceLocation = #_sourceLocation,
                                _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected limit-exceeded (\(limit))", sourceLocation: sourceLocation)
        } catch let error as LedgerError {
            #expect(error.code == .limitExceeded, sourceLocation: sourceLocation)
            #expect(error.limit == limit, sourceLocation: sourceLocation)
            #expect(error.key == key, sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: BackendKind.allCases)
    func aRetryPastTheLastAttemptIsRefusedNotTrapped(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        try await harness.appendRaw([.intent(.init(key: "k", attempt: Self.last, timeMilliseconds: 5))])
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        await Self.expectExhausted("attempt", key: "k") {
            _ = try await ledger.once("k", as: String.self, whenPending: .retry) { _ in runs.increment(); return "ran" }
        }
        #expect(runs.count == 0)
        #expect(try harness.keyRecords("k").map(\.kind) == [.intent], "nothing was written")
        #expect(try await ledger.entry("k")?.status == .pendingUnknown)
    }

    @Test(arguments: BackendKind.allCases)
    func aRerunPastTheLastGenerationIsRefusedNotWrapped(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        try await harness.appendRaw([
            .intent(.init(key: "k", attempt: 1, generation: Self.last, scope: .whileInFlight, timeMilliseconds: 5)),
            .completion(.init(key: "k", attempt: 1, timeMilliseconds: 6, receipt: Array("\"done\"".utf8))),
        ])
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let runs = Counter()
        // A while-in-flight run that finished blocks nothing: the next run needs generation 2^32.
        await Self.expectExhausted("generation", key: "k") {
            _ = try await ledger.once("k", as: String.self, scope: .whileInFlight) { _ in runs.increment(); return "again" }
        }
        #expect(runs.count == 0)
        #expect(try harness.keyRecords("k").map(\.kind) == [.intent, .completion], "nothing was written")
        let entry = try #require(try await ledger.entry("k"))
        #expect(entry.status == .done)
        #expect(entry.generation == Self.last)
    }

    @Test(arguments: BackendKind.allCases)
    func aForgetAtTheLastGenerationIsRefused(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        try await harness.appendRaw([
            .intent(.init(key: "k", attempt: 1, generation: Self.last, timeMilliseconds: 5)),
            .completion(.init(key: "k", attempt: 1, timeMilliseconds: 6, receipt: Array("\"done\"".utf8))),
        ])
        let ledger = try harness.open()
        defer { try? ledger.close() }
        await Self.expectExhausted("generation", key: "k") {
            try await ledger.forgetDoneEntryAllowingRerun("k", reason: "a re-run", actor: "test")
        }
        #expect(try harness.keyRecords("k").map(\.kind) == [.intent, .completion], "nothing was written")
        #expect(try await ledger.entry("k")?.status == .done)
    }

    @Test(arguments: BackendKind.allCases)
    func aForgetWrittenByHandAtTheLastGenerationLeavesAKeyNoClaimTakes(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        try await harness.appendRaw([
            .intent(.init(key: "k", attempt: 1, generation: Self.last, timeMilliseconds: 5)),
            .completion(.init(key: "k", attempt: 1, timeMilliseconds: 6, receipt: Array("\"done\"".utf8))),
            .forget(.init(key: "k", timeMilliseconds: 7, actor: "hand", reason: "written by hand")),
        ])
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let entry = try #require(try await ledger.entry("k"))
        #expect(entry.status == .absent)
        #expect(entry.generation == Self.last, "never wrapped to generation 0, whose token was handed out")
        let runs = Counter()
        await Self.expectExhausted("generation", key: "k") {
            _ = try await ledger.once("k", as: String.self) { _ in runs.increment(); return "again" }
        }
        #expect(runs.count == 0)
        // Another key still runs.
        let other = try await ledger.once("other", as: String.self) { _ in "fresh" }
        #expect(other.receipt == "fresh")
    }
}
