// Proves that automatic compaction (`LogConfiguration.compactAfterLogBytes`) judges retention on
// the ledger's clock also when the ledger is built on a `FileStore` opened with another clock
// (`Ledger(store: FileStore(directory:), clock:)`; the store's clock defaults to the wall clock).
// Before, the store's own clock was used: a `.window` entry whose window had not passed on the
// ledger's clock was dropped, and the effect ran a second time inside its window.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization
import Testing
import OnceLedgerStoreContract

@Suite struct RetentionClockTests {
    /// A ledger built on a FileStore with the ledger's own clock: automatic compaction must
    /// judge `.window` entries on the ledger's clock, not the wall clock.
    @Test func automaticCompactionJudgesWindowsOnTheLedgersClock() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-probe-auto-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = ManualClock(1_000)
        var configuration = LogConfiguration(segmentBytes: 128 << 10)
        configuration.compactAfterLogBytes = LogConfiguration.compactAfterLogBytesMin
        let store = try FileStore(directory: directory, configuration: configuration)
        let ledger = Ledger(store: store, clock: clock.function)
        let tokens = Mutex<[String]>([])
        // A one-day window: on the ledger's clock it has not passed.
        _ = try await ledger.onceBytes("digest", scope: .window(milliseconds: 86_400_000)) { effect in
            tokens.withLock { $0.append(effect.token) }
            return [1]
        }
        let filler = [UInt8](repeating: 7, count: 2_000)
        var index = 0
        while store.automaticCompactions == 0 && index < 1_000 {
            _ = try await ledger.onceBytes(IdempotencyKey("fill-\(index)")) { _ in filler }
            index += 1
        }
        await store.waitForAutomaticCompaction()
        #expect(store.automaticCompactions > 0)
        #expect(store.automaticCompactionError == nil)
        let again = try await ledger.onceBytes("digest", scope: .window(milliseconds: 86_400_000)) { effect in
            tokens.withLock { $0.append(effect.token) }
            return [2]
        }
        #expect(!again.wasPerformed, "the window has not passed on the ledger's clock")
        #expect(tokens.withLock { $0.count } == 1)
        try ledger.close()
    }
}
