// Proves that a reconcile's answer applies only to the entry it was asked about: while a slow
// reconcile runs, the key is settled absent by another owner of the store, dropped at compaction
// and claimed again (a newer generation, attempts from 1 again: the same attempt); the answer "it did not
// happen" about the old entry must not make the newer claim absent (its effect may have run and
// would run a second time). The store refuses the resolve (the generation differs), the caller
// decides again, asks again about the entry as it is now, and the effect never runs here.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerStoreContract
import Synchronization
import Testing

@Suite struct ReconcileGenerationTests {
    @Test(arguments: BackendKind.allCases)
    func anAnswerAboutAnOlderGenerationIsNotAppliedToANewerClaim(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let store = ledger.store
        // "k" pending-unknown: its effect's outcome is unknown.
        try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
        let first = try #require(try await ledger.entry("k"))

        let asked = Mutex<[EntryInfo]>([])
        let runs = Counter()
        let outcome = try await ledger.once("k", as: String.self, whenPending: .reconcile { entry in
            let count = asked.withLock { asked in
                asked.append(entry)
                return asked.count
            }
            if count == 1 {
                // Meanwhile another owner of the store settles it absent, a compaction drops it,
                // and a new claim of it is left pending-unknown, at the attempt the entry asked
                // about had.
                _ = try await store.resolve(ResolveRequest(key: "k", outcome: .absent, expected: .pendingUnknown,
                                                           actor: "ops", reason: "settled", timeMilliseconds: 2_000))
                try await store.compact(nowMilliseconds: 2_100)
                try await store.abandon(try granted(try await store.claim(claimRequest("k"))))
                return .didNotHappen  // true of the entry asked about, not of the newer claim
            }
            return .happened("charged by the newer claim")
        }) { _ in
            runs.increment()
            return "ran here"
        }

        let questions = asked.withLock { $0 }
        try #require(questions.count == 2, "the caller asked again about the entry as it is now: \(questions)")
        #expect(questions[0].generation == first.generation)
        #expect(questions[1].generation != first.generation && questions[1].attempt == first.attempt)
        #expect(runs.count == 0, "the newer claim's effect may have run: it is never run here")
        #expect(!outcome.wasPerformed && outcome.receipt == "charged by the newer claim")
        let entry = try #require(try await ledger.entry("k"))
        #expect(entry.status == .done && entry.generation == questions[1].generation)
    }
}
