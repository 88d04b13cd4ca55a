// Smoke: a once call performs, a second returns already-done with the stored receipt,
// on both backends; a reopen of the file backend keeps it done.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Synchronization
import Testing

@Suite struct SmokeTests {
    @Test func performsThenSkips() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-smoke-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let ledger = try Ledger.open(directory: directory)
            let first = try await ledger.once("order-42", as: String.self) { context in
                #expect(context.attempt == 1)
                return "sent:\(context.token)"
            }
            #expect(first.wasPerformed)
            let second = try await ledger.once("order-42", as: String.self) { _ in
                Issue.record("must not run twice")
                return "again"
            }
            #expect(!second.wasPerformed)
            #expect(second.receipt == first.receipt)
            try ledger.close()
        }
        let reopened = try Ledger.open(directory: directory)
        defer { try? reopened.close() }
        #expect(try reopened.entry("order-42")?.status == .done)
        let third = try await reopened.once("order-42", as: String.self) { _ in "x" }
        #expect(!third.wasPerformed)
    }
}

@Suite struct ReentrancyAndReceiptTests {
    @Test func onceOnItsOwnKeyFromInsideTheEffectIsRefused() async throws {
        let ledger = Ledger.inMemory()
        await #expect {
            _ = try await ledger.once("outer", as: String.self) { _ in
                let inner = try await ledger.once("outer", as: String.self) { _ in "inner" }
                return inner.receipt
            }
        } throws: { error in
            // The inner call is refused; the outer effect rethrows it, so the key is pending-unknown.
            guard let error = error as? LedgerError, error.code == .effectFailed,
                  let inner = error.underlyingError as? LedgerError else { return false }
            return inner.code == .invalidArgument
        }
        #expect(try ledger.entry("outer")?.status == .pendingUnknown)
    }

    /// Two levels down: A's effect calls B, whose effect calls A again. Refused like the
    /// direct case (the running keys form a list through the nested effects), and B
    /// still runs once: only A is left pending.
    @Test func onceOnAnOuterKeyFromANestedEffectIsRefused() async throws {
        let ledger = Ledger.inMemory()
        let innerError = Mutex<LedgerError?>(nil)
        _ = try await ledger.onceBytes("A") { _ in
            _ = try await ledger.onceBytes("B") { _ in
                do {
                    _ = try await ledger.onceBytes("A") { _ in [3] }
                } catch let error as LedgerError {
                    innerError.withLock { $0 = error }
                }
                return [2]
            }
            return [1]
        }
        #expect(innerError.withLock { $0?.code } == .invalidArgument)
        #expect(try ledger.entry("B")?.status == .done)
        #expect(try ledger.entry("A")?.status == .done)
        // And the list unwinds: A can be asked again from the top.
        let again = try await ledger.onceBytes("A") { _ in [9] }
        #expect(again.receipt == [1])
    }

    /// Encodes fine, never decodes: `.performed` must still hand back the value the effect returned.
    struct WriteOnly: Codable, Sendable, Equatable {
        var id: Int
        init(id: Int) { self.id = id }
        init(from decoder: any Decoder) throws {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "write-only"))
        }
    }

    @Test func performedReturnsTheValueInHand() async throws {
        let ledger = Ledger.inMemory()
        let outcome = try await ledger.once("w", as: WriteOnly.self) { _ in WriteOnly(id: 7) }
        #expect(outcome.receipt == WriteOnly(id: 7))
        await #expect {
            _ = try await ledger.once("w", as: WriteOnly.self) { _ in WriteOnly(id: 8) }
        } throws: { ($0 as? LedgerError)?.code == .receiptDecodingFailed }
    }
}
