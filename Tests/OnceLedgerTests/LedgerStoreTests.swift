// Proves that both stores keep the `LedgerStore` contract: the shared checks of
// `OnceLedgerStoreContract` (claim / complete / release; `doneEntry`; fencing; two `Ledger`s
// running an effect once; `waitForChange`; resolve and forget rules; paging in key-byte order;
// window scopes), each run on a FileStore in a temp directory and on an InMemoryStore — the
// PostgreSQL store runs the same checks in `PostgresStoreTests` — and two checks of these stores
// alone: intents found at open are pending-unknown, never live; forget of a done key whose new
// intent is being written is refused. Races are ordered with the store's waiter count and gates,
// never with sleeps or clocks.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerStoreContract
import Testing

/// Opens stores of one kind on one place (a directory, or an in-memory record list that
/// survives closing a store, like a restart).
final class StoreHarness: Sendable {
    let kind: BackendKind
    let directory: String
    let memory = InMemoryRecordLog()

    init(_ kind: BackendKind, name: String = #function) {
        self.kind = kind
        let clean = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
        directory = FileManager.default.temporaryDirectory.path + "/ol-store-\(clean)-\(UUID().uuidString.prefix(8))"
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func open() throws -> any LedgerStore {
        switch kind {
        case .file: try FileStore(directory: directory, configuration: LogConfiguration(segmentBytes: 128 << 10))
        case .memory: try InMemoryStore(log: memory)
        }
    }

    /// The contract's view of these stores: one writer per place, `doneEntry` answered.
    var underTest: StoreUnderTest {
        StoreUnderTest(open: { try self.open() },
                       waiterCount: { store, key in StoreHarness.core(store)?.waiterCount(key) ?? -1 },
                       twoStoresAtOnce: false, answersDoneEntries: true)
    }

    /// The claim rules under `store`, for its waiter count.
    static func core(_ store: any LedgerStore) -> LogStore? {
        (store as? InMemoryStore)?.store ?? (store as? FileStore)?.store
    }
}

@Suite struct LedgerStoreTests {
    @Test(arguments: BackendKind.allCases)
    func claimCompleteAndRelease(_ kind: BackendKind) async throws {
        try await StoreContract.claimCompleteAndRelease(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func doneEntryAnswersOnlyWhatClaimWouldAnswerDone(_ kind: BackendKind) async throws {
        try await StoreContract.doneEntryAnswersOnlyWhatClaimWouldAnswerDone(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func aStaleClaimIsFenced(_ kind: BackendKind) async throws {
        try await StoreContract.aStaleClaimIsFenced(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func twoLedgersOnOneStoreRunTheEffectOnce(_ kind: BackendKind) async throws {
        try await StoreContract.twoLedgersRunTheEffectOnce(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func aSecondClaimOfALiveKeyIsRunningOrAMismatch(_ kind: BackendKind) async throws {
        try await StoreContract.aSecondClaimOfALiveKeyIsRunningOrAMismatch(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases, [true, false])
    func waitForChangeWakesWhenTheClaimEnds(_ kind: BackendKind, completes: Bool) async throws {
        try await StoreContract.waitForChangeWakesWhenTheClaimEnds(StoreHarness(kind).underTest, completes: completes)
    }

    @Test(arguments: BackendKind.allCases)
    func aCancelledWaitForChangeThrowsAndLeavesTheClaim(_ kind: BackendKind) async throws {
        try await StoreContract.aCancelledWaitForChangeThrowsAndLeavesTheClaim(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func waitForChangeReturnsAtOnceForAKeyNobodyHolds(_ kind: BackendKind) async throws {
        try await StoreContract.waitForChangeReturnsAtOnceForAKeyNobodyHolds(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func resolveWithAWrongExpectedAttemptIsRefused(_ kind: BackendKind) async throws {
        try await StoreContract.resolveWithAWrongExpectedAttemptIsRefused(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func resolveOfANewerGenerationWithTheSameAttemptIsRefused(_ kind: BackendKind) async throws {
        try await StoreContract.resolveOfANewerGenerationWithTheSameAttemptIsRefused(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func forgetAndResolveOfALiveKeyAreRefused(_ kind: BackendKind) async throws {
        try await StoreContract.forgetAndResolveOfALiveKeyAreRefused(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func entriesArePagedInKeyByteOrder(_ kind: BackendKind) async throws {
        try await StoreContract.entriesArePagedInKeyByteOrder(StoreHarness(kind).underTest)
    }

    @Test(arguments: BackendKind.allCases)
    func windowScopesExpireOnTheLedgersClock(_ kind: BackendKind) async throws {
        try await StoreContract.windowScopesExpireOnTheLedgersClock(StoreHarness(kind).underTest)
    }

    /// A claim granted before a restart is not live afterwards: its intent is pending-unknown,
    /// a claim answers `.pendingUnknown` (not `.running`), and the old claim cannot complete.
    @Test(arguments: BackendKind.allCases)
    func intentsFoundAtOpenArePendingUnknownNeverLive(_ kind: BackendKind) async throws {
        let harness = StoreHarness(kind)
        var store = try harness.open()
        let before = try granted(try await store.claim(claimRequest("k")))
        try store.close()
        store = try harness.open()
        defer { try? store.close() }

        guard case .pendingUnknown(let entry) = try await store.claim(claimRequest("k")) else {
            Issue.record("an intent found at open must claim as pending-unknown")
            return
        }
        #expect(entry.attempt == 1)
        try await store.waitForChange(of: entry)   // returns at once: nobody holds the key
        let late = await ledgerError { try await store.complete(before, receipt: [], timeMilliseconds: 2_000) }
        #expect(late?.code == .wrongState)
        let retried = try granted(try await store.claim(claimRequest("k", whenPending: .retry)))
        #expect((retried.attempt, retried.generation) == (2, 0))
    }

    /// The live check itself, not the state check: while a new intent of a done key is on its
    /// way to the log (held at a gate), the stored entry is still done, yet forget and
    /// correct are refused because the key is claimed.
    @Test func forgetOfADoneKeyWhoseNewIntentIsBeingWrittenIsRefused() async throws {
        let memory = InMemoryRecordLog()
        let audit = AppendAudit()
        let store = try InMemoryStore(log: RecordingBackend(inner: memory, log: audit))
        defer { try? store.close() }
        let first = try granted(try await store.claim(claimRequest("k", scope: .whileInFlight)))
        _ = try await store.complete(first, receipt: [1], timeMilliseconds: 1_001)
        let hold = audit.holdNextAppend()
        let claiming = Task { try await store.claim(claimRequest("k", scope: .whileInFlight)) }
        await hold.entered.wait()
        #expect(try await store.entry("k")?.status == .done, "the new intent is not durable yet")
        let forget = await ledgerError {
            try await store.forget(ForgetRequest(key: "k", actor: "test", reason: "resend", timeMilliseconds: 1_002))
        }
        #expect(forget?.code == .wrongState)
        #expect(forget?.message.contains("running") == true, "\(forget?.message ?? "")")
        let correct = await ledgerError {
            try await store.resolve(ResolveRequest(key: "k", outcome: .done(receipt: [9]), expected: .done,
                                                   actor: "test", reason: "fix", timeMilliseconds: 1_002))
        }
        #expect(correct?.code == .wrongState)
        hold.release.open()
        let live = try granted(try await claiming.value)
        _ = try await store.complete(live, receipt: [2], timeMilliseconds: 1_003)
        let forgotten = audit.records.withLock { $0.filter { $0.kind == .forget }.count }
        #expect(forgotten == 0, "the refused forget wrote nothing")
    }
}
