// Proves that `entries()` never returns a done entry without its receipt when a compaction drops
// the entry while the page is read: the listing and the receipts' lookups are one look at the
// state. Before, the entries were listed under one hold of the state's lock and each done
// entry's receipt looked up under another; a compaction in between that dropped a done entry
// whose `.window` had passed (retention) made the lookup find nothing, and the listed entry was
// returned as it was listed: done, with an empty receipt.
import Dispatch
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerLog
import OnceLedgerStoreContract
import Testing

@Suite struct EntriesDuringCompactionTests {
    @Test(arguments: BackendKind.allCases)
    func aDoneEntryDroppedWhileAPageIsReadIsNeverReturnedWithoutItsReceipt(kind: BackendKind) async throws {
        let harness = Harness(kind, clock: ManualClock(1_000))
        let ledger = try harness.open()
        _ = try await ledger.onceBytes("digest", scope: .window(milliseconds: 1_000)) { _ in Array("sent".utf8) }
        _ = try await ledger.onceBytes("forever") { _ in Array("kept".utf8) }
        harness.clock.advance(1_000)
        let store = try #require(ledger.logStore)
        // Once: a compaction (which drops "digest", its window passed) right after the listing.
        store.afterListingEntries.withLock { hook in
            hook = { [ledger] in
                store.afterListingEntries.withLock { $0 = nil }
                // The hook runs on a thread of Swift concurrency's pool (two on two cores) and
                // blocks it until the compaction ends: the compaction runs on the ledger's own
                // executor, so it never needs that pool (with the pool's other thread blocked
                // too, the whole test run hung).
                let done = DispatchSemaphore(value: 0)
                Task.detached(executorPreference: ledger.executor) {
                    try? await ledger.compact()
                    done.signal()
                }
                if done.wait(timeout: .now() + .seconds(300)) == .timedOut {
                    Issue.record("the compaction did not end within 300 s: the test gave up waiting")
                }
            }
        }
        let listed = try await ledger.entries()
        for entry in listed where entry.status == .done {
            #expect(!entry.receipt.isEmpty, "\(entry.key) is done but came without its receipt")
        }
        #expect(listed.first { $0.key == "forever" }?.receipt == Array("kept".utf8))
        #expect(try await ledger.entry("digest") == nil, "the compaction dropped it")
        try ledger.close()
    }
}

/// The tests' gates never hang a test run: a wait has a bound, past which the test records an issue.
@Suite struct GateBoundTests {
    @Test func aGateNobodyOpensFailsTheTestInsteadOfHanging() async {
        let gate = Gate()
        await withKnownIssue("the gate is never opened: the wait gives up after its bound") {
            await gate.wait(patience: .milliseconds(20))
        }
        gate.open()
        await gate.wait()  // open: returns at once, records nothing
        #expect(gate.isOpen)
    }
}
