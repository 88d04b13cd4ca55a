// Proves `once` keeps its promise when a commit's fsync fails and Linux loses the pages it could
// not write (readable but clean, never written: `SimulatedStorage.Options.failedSyncLosesWrites`)
// and the ledger is reopened in the same boot (`Spec/RECOVERY.md` §4.1): the call whose claim
// failed runs no effect; the reopen drops its intent, which the disk never got, instead of
// reporting it pending-unknown from the page cache; the key can be claimed again; and after a
// power loss every key acknowledged done, before and after the failure, is still done. Over
// seeds, with the failure at each of the first commits after some done keys.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing

@Suite struct LostPagesTests {
    static func open(_ storage: SimulatedStorage) throws -> Ledger {
        try Ledger.open(directory: "/ledger", configuration: LedgerCrashRunner.fastConfiguration, storage: storage,
                        clock: { 1_000 })
    }

    @Test(arguments: 0..<4) func aClaimWhoseSyncLostItsPagesIsDroppedAtReopen(failAfter: Int) async throws {
        for seed in CrashSeeds.seeds(4) {
            let context = "seed=\(seed) failAfter=\(failAfter)"
            var options = SimulatedStorage.Options()
            options.failedSyncLosesWrites = true
            let storage = SimulatedStorage(seed: seed, options: options)
            var ledger = try Self.open(storage)
            var done: Set<String> = []
            for index in 0..<(3 + failAfter) {
                let key = "before-\(index)"
                _ = try await ledger.once(IdempotencyKey(key), as: String.self) { _ in "receipt-\(index)" }
                done.insert(key)
            }
            storage.injectFault(.fileSync, errno: EIO, pathContaining: ".seg")
            let ran = Mutex(false)
            await #expect(throws: (any Error).self, "\(context)") {
                _ = try await ledger.once("failed", as: String.self) { _ in
                    ran.withLock { $0 = true }
                    return "never"
                }
            }
            #expect(!ran.withLock { $0 }, "an effect ran on a claim that was not durable — \(context)")
            try? ledger.close()

            // Same boot: the page cache still shows the failed intent; the device does not.
            ledger = try Self.open(storage)
            #expect(try await ledger.entry("failed") == nil,
                    "the reopen read back an intent the disk never got — \(context)")
            for key in done { #expect(try await ledger.entry(key)?.status == .done, "\(key) — \(context)") }
            _ = try await ledger.once("failed", as: String.self) { _ in "now" }
            _ = try await ledger.once("after", as: String.self) { _ in "after" }
            done.formUnion(["failed", "after"])
            try ledger.close()

            storage.crash()
            do {
                ledger = try Self.open(storage)
            } catch {
                Issue.record("refused to open after a lost fsync, a reopen and a power loss: \(error) — \(context)")
                continue
            }
            for key in done { #expect(try await ledger.entry(key)?.status == .done, "\(key) — \(context)") }
            try ledger.close()
        }
    }
}
