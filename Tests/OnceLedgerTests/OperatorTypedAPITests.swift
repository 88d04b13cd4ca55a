// Proves the typed operator API: a pending key resolved with a `Codable` receipt (looked up by
// `IdempotencyKey`) is what later `once(key, as:)` calls return, without running the effect;
// a done entry whose receipt does not decode (an operator stored a bare charge id) is fixed
// by `correctReceipt`, an audited resolve record that keeps the generation and so the effect
// token (the downstream keeps de-duplicating; nothing runs again), also after a restart; and
// a correction in the wrong state, without a reason or over the limit writes nothing.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import Testing
import OnceLedgerStoreContract

private struct ChargeReceipt: Codable, Sendable, Equatable {
    var chargeID: String
}

@Suite struct OperatorTypedAPITests {
    /// Leaves `key` pending-unknown: its effect threw after (maybe) charging.
    private func makePending(_ ledger: Ledger, _ key: IdempotencyKey) async {
        let error = await ledgerError {
            try await ledger.once(key, as: ChargeReceipt.self) { _ in throw TestFailure("gateway timeout") }
        }
        #expect(error?.code == .effectFailed)
    }

    @Test(arguments: BackendKind.allCases)
    func aTypedResolveIsWhatLaterTypedCallsReturn(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        let key: IdempotencyKey = "charge-9"
        await makePending(ledger, key)
        try await ledger.resolvePending(key, as: try .done(ChargeReceipt(chargeID: "ch_9")),
                                        reason: "seen in the processor dashboard", actor: "alice")
        let runs = Counter()
        let outcome = try await ledger.once(key, as: ChargeReceipt.self) { _ in
            runs.increment()
            return ChargeReceipt(chargeID: "ch_again")
        }
        #expect(runs.count == 0)
        #expect(!outcome.wasPerformed)
        #expect(outcome.receipt == ChargeReceipt(chargeID: "ch_9"))
        let entry = try #require(try await ledger.entry(key))
        #expect(entry.status == .done)
        #expect(try entry.receipt(as: ChargeReceipt.self) == ChargeReceipt(chargeID: "ch_9"))
        #expect(try harness.keyRecords("charge-9").map(\.kind) == [.intent, .resolve])
    }

    @Test(arguments: BackendKind.allCases)
    func aCorrectionReplacesTheReceiptAndKeepsTheToken(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        defer { try? ledger.close() }
        let key: IdempotencyKey = "charge-10"
        await makePending(ledger, key)
        // What `onceledger resolve --receipt ch_10` used to store: not the app's JSON.
        try await ledger.resolvePending("charge-10", as: .done(receipt: Array("ch_10".utf8)), reason: "charged")
        let before = try #require(try await ledger.entry(key))
        let broken = await ledgerError { try await ledger.once(key, as: ChargeReceipt.self) { _ in ChargeReceipt(chargeID: "x") } }
        #expect(broken?.code == .receiptDecodingFailed)

        harness.clock.advance(5)
        try await ledger.correctReceipt(key, to: ChargeReceipt(chargeID: "ch_10"), reason: "resolved with a bare id",
                                        actor: "alice")
        for round in 0..<2 {
            if round == 1 { ledger = try harness.reopen(ledger) }
            let runs = Counter()
            let outcome = try await ledger.once(key, as: ChargeReceipt.self) { _ in
                runs.increment()
                return ChargeReceipt(chargeID: "ch_twice")
            }
            #expect(runs.count == 0)
            #expect(outcome.receipt == ChargeReceipt(chargeID: "ch_10"))
            let after = try #require(try await ledger.entry(key))
            #expect(after.status == .done)
            #expect(after.generation == before.generation)
            #expect(after.attempt == before.attempt)
            #expect(after.token == before.token)
            #expect(after.fingerprint == before.fingerprint)
        }
        let records = try harness.keyRecords("charge-10")
        #expect(records.map(\.kind) == [.intent, .resolve, .resolve])
        guard case .resolve(let correction) = records.last else { return }
        #expect(correction.outcome == .done)
        #expect(correction.attempt == before.attempt)
        #expect(correction.actor == "alice")
        #expect(correction.reason == "resolved with a bare id")
        #expect(correction.receipt == Array(#"{"chargeID":"ch_10"}"#.utf8))
    }

    @Test(arguments: BackendKind.allCases)
    func aCorrectionThatCannotApplyWritesNothing(_ kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { try? ledger.close() }
        await makePending(ledger, "pending")
        try await ledger.once("done", as: ChargeReceipt.self) { _ in ChargeReceipt(chargeID: "ch_1") }
        let written = try harness.keyedRecordCount()
        let receipt = ChargeReceipt(chargeID: "ch_2")
        let pending = await ledgerError { try await ledger.correctReceipt("pending", to: receipt, reason: "r") }
        #expect(pending?.code == .wrongState)
        #expect(pending?.entry?.status == .pendingUnknown)
        let missing = await ledgerError { try await ledger.correctReceipt("never-seen", to: receipt, reason: "r") }
        #expect(missing?.code == .wrongState)
        let noReason = await ledgerError { try await ledger.correctReceipt("done", to: receipt, reason: "") }
        #expect(noReason?.code == .invalidArgument)
        let oversized = await ledgerError {
            try await ledger.correctReceipt("done", to: [UInt8](repeating: 1, count: FormatLimits.receiptBytesMax + 1),
                                            reason: "r")
        }
        #expect(oversized?.code == .limitExceeded)
        #expect(try harness.keyedRecordCount() == written)
        #expect(try try await ledger.entry("done")?.receipt(as: ChargeReceipt.self) == ChargeReceipt(chargeID: "ch_1"))
        #expect(!ledger.isRunning("done"))
    }
}
