// Proves retention for `once` entries (`Spec/FORMAT.md` §9.5) on both stores (a FileStore in a
// temp directory and an InMemoryStore, reopened like a restarted process where it matters): a
// compaction drops entries that block nothing any more — forgotten, released, resolved absent,
// done with `.whileInFlight`, done with `.window` once the window has passed on the ledger's
// (manual) clock — and keeps pending-unknown entries, `.forever` entries, windows not yet passed
// (also when the clock went backwards) and keys with a claim in flight. A dropped key run again
// gets a token that no earlier run of any key was given (every token handed to an effect is
// collected and compared), because the durable generation floor survives reopening and later
// compactions; a ledger compacted before retention existed (a version-3 snapshot without a
// floor) still opens; salvage carries the floor and the scopes into the new ledger; a loop of
// runs, forgets and compactions keeps the directory bounded. And
// with `LedgerCrashRunner` (a crash at every I/O step of runs, forgets and compactions, then
// power loss or process kill, reopen, rerun): no effect is ever handed a token whose run had
// already finished, so a crash never loses the floor.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing
import OnceLedgerStoreContract

/// Every token handed to an effect so far, in order.
private final class Tokens: Sendable {
    let all = Mutex<[String]>([])
    func add(_ token: String) { all.withLock { $0.append(token) } }
    var list: [String] { all.withLock { $0 } }
}

private struct Failed: Error {}

/// Runs `key` (its effect records the token it was given) and returns the outcome.
@discardableResult
private func run(_ ledger: Ledger, _ key: String, _ tokens: Tokens, scope: DeduplicationScope = .forever,
                 receipt: String = "r") async throws -> OnceOutcome<[UInt8]> {
    try await ledger.onceBytes(IdempotencyKey(key), scope: scope) { effect in
        tokens.add(effect.token)
        return Array(receipt.utf8)
    }
}

/// Runs `key` once more and expects a token never handed out before.
private func expectFreshToken(_ ledger: Ledger, _ key: String, _ tokens: Tokens,
                              sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let before = tokens.list
    let outcome = try await run(ledger, key, tokens)
    #expect(outcome.wasPerformed, "the dropped key runs again", sourceLocation: sourceLocation)
    let token = tokens.list.last ?? ""
    #expect(tokens.list.count == before.count + 1, sourceLocation: sourceLocation)
    #expect(!before.contains(token), "token \(token) of \(key) (generation \(outcome.entry.generation)) was issued before",
            sourceLocation: sourceLocation)
}

private func keys(_ ledger: Ledger) async throws -> [String] {
    try await ledger.entries().map(\.key)
}

@Suite struct OnceRetentionTests {
    @Test(arguments: BackendKind.allCases)
    func aForgottenKeyIsDroppedAndRunsAgainWithANewToken(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let tokens = Tokens()
        try await run(ledger, "order-1", tokens)
        try await run(ledger, "order-2", tokens)
        try await ledger.forgetDoneEntryAllowingRerun("order-1", reason: "refunded")
        #expect(try await ledger.entry("order-1")?.status == .absent)
        try await ledger.compact()
        #expect(try await keys(ledger) == ["order-2"])
        #expect(try await ledger.entryCount() == 1)
        #expect(ledger.logStore?.generationFloor == 2, "the forgotten entry was at generation 1")
        try await expectFreshToken(ledger, "order-1", tokens)

        // After a restart too (the floor is in the snapshot), for a key forgotten twice.
        try await ledger.forgetDoneEntryAllowingRerun("order-1", reason: "again")
        try await ledger.compact()
        ledger = try harness.reopen(ledger)
        #expect(try await keys(ledger) == ["order-2"])
        try await expectFreshToken(ledger, "order-1", tokens)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aReleasedKeyIsDroppedAndRunsAgainWithANewToken(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let tokens = Tokens()
        await #expect(throws: LedgerError.self) {
            try await ledger.onceBytes("charge-1") { effect in
                tokens.add(effect.token)
                throw EffectDidNotHappen("card declined before the call")
            }
        }
        #expect(try await ledger.entry("charge-1")?.status == .absent)
        try await ledger.compact()
        #expect(try await ledger.entry("charge-1") == nil)
        // The released run's token may have reached the downstream (which may have cached
        // its rejection): the next run gets another one.
        try await expectFreshToken(ledger, "charge-1", tokens)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aKeyResolvedAbsentIsDroppedAndRunsAgainWithANewToken(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let tokens = Tokens()
        await #expect(throws: LedgerError.self) {
            try await ledger.onceBytes("mail-1") { effect in
                tokens.add(effect.token)
                throw Failed()
            }
        }
        #expect(try await ledger.entry("mail-1")?.status == .pendingUnknown)
        try await ledger.compact()
        #expect(try await ledger.entry("mail-1")?.status == .pendingUnknown, "a pending-unknown entry is never dropped")
        ledger = try harness.reopen(ledger)
        try await ledger.resolvePending("mail-1", as: .absent, reason: "the mail server has no such message")
        try await ledger.compact()
        #expect(try await ledger.entry("mail-1") == nil)
        try await expectFreshToken(ledger, "mail-1", tokens)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aWindowEntryIsDroppedOnceItsWindowHasPassedOnTheLedgersClock(kind: BackendKind) async throws {
        let harness = Harness(kind, clock: .init(1_000_000))
        var ledger = try harness.open()
        let tokens = Tokens()
        let start = harness.clock.now
        try await run(ledger, "digest", tokens, scope: .window(milliseconds: 60_000))
        try await run(ledger, "forever", tokens)

        harness.clock.advance(59_999)
        try await ledger.compact()
        #expect(try await keys(ledger) == ["digest", "forever"], "the window has not passed")
        // The scope survives the snapshot: after a restart the next compaction still knows
        // the entry's window.
        ledger = try harness.reopen(ledger)
        harness.clock.set(start - 10_000)
        try await ledger.compact()
        #expect(try await keys(ledger) == ["digest", "forever"], "a clock that went backwards drops nothing")

        harness.clock.set(start + 60_000)
        try await ledger.compact()
        #expect(try await keys(ledger) == ["forever"])
        try await expectFreshToken(ledger, "digest", tokens)
        ledger = try harness.reopen(ledger)
        #expect(try await keys(ledger) == ["digest", "forever"])
        #expect(try await run(ledger, "forever", tokens).wasPerformed == false, "a forever entry blocks for ever")
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aDoneWhileInFlightEntryIsDropped(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let tokens = Tokens()
        try await run(ledger, "spawn-worker", tokens, scope: .whileInFlight)
        try await run(ledger, "spawn-worker", tokens, scope: .whileInFlight)
        #expect(try await ledger.entry("spawn-worker")?.generation == 1)
        try await ledger.compact()
        #expect(try await ledger.entry("spawn-worker") == nil)
        try await expectFreshToken(ledger, "spawn-worker", tokens)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func pendingForeverAndUnexpiredEntriesSurviveCompactionAndRestart(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let tokens = Tokens()
        try await run(ledger, "a-forever", tokens)
        try await run(ledger, "b-window", tokens, scope: .window(milliseconds: .max))
        await #expect(throws: LedgerError.self) {
            try await ledger.onceBytes("c-pending") { effect in
                tokens.add(effect.token)
                throw Failed()
            }
        }
        try await run(ledger, "d-forgotten", tokens)
        try await ledger.forgetDoneEntryAllowingRerun("d-forgotten", reason: "test")
        let before = try await ledger.entries().filter { $0.key != "d-forgotten" }
        harness.clock.advance(365 * 24 * 3_600_000)
        for _ in 0..<2 {
            try await ledger.compact()
            #expect(try await ledger.entries() == before)
            ledger = try harness.reopen(ledger)
            #expect(try await ledger.entries() == before)
        }
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func aKeyRunningDuringACompactionIsKept(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let tokens = Tokens()
        try await run(ledger, "job", tokens)
        try await ledger.forgetDoneEntryAllowingRerun("job", reason: "rerun")
        // A claim of the absent key is granted, its intent not yet written (the store holds
        // it live): a compaction now must keep the entry.
        let hold = Gate()
        let entered = Gate()
        let running = Task {
            try await ledger.onceBytes("job") { effect in
                tokens.add(effect.token)
                entered.open()
                await hold.wait()
                return [1]
            }
        }
        await entered.wait()
        try await ledger.compact()
        #expect(try await ledger.entry("job")?.status == .pendingUnknown)
        hold.open()
        let outcome = try await running.value
        #expect(outcome.entry.generation == 1)
        #expect(Set(tokens.list).count == tokens.list.count)
        try ledger.close()
    }

    @Test func aStoreClaimRegisteredBeforeItsIntentIsNotDropped() async throws {
        // The window between a claim's grant and its intent being applied: the entry is still
        // absent in the state, only the live registration protects it.
        let harness = Harness(.memory)
        let ledger = try harness.open()
        let tokens = Tokens()
        try await run(ledger, "job", tokens)
        try await ledger.forgetDoneEntryAllowingRerun("job", reason: "rerun")
        let hold = harness.recordLog.holdNextAppend()
        let running = Task { try await run(ledger, "job", tokens) }
        await hold.entered.wait()
        #expect(try await ledger.entry("job")?.status == .absent)
        try await ledger.compact()
        #expect(try await ledger.entry("job")?.status == .absent, "a key with a live claim is kept")
        hold.release.open()
        let outcome = try await running.value
        #expect(outcome.wasPerformed && outcome.entry.generation == 1)
        #expect(Set(tokens.list).count == tokens.list.count)
        try ledger.close()
    }

    @Test func aLedgerCompactedBeforeRetentionExistedStillOpens() async throws {
        // `ledger-compacted` (a snapshot of format version 2) and a version-3 snapshot written
        // without any drop hold no generation floor: the floor is 0 and nothing changes.
        let harness = Harness(.file)
        try FileManager.default.createDirectory(atPath: harness.directory, withIntermediateDirectories: true)
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Spec/vectors/ledger-compacted").path
        for name in try FileManager.default.contentsOfDirectory(atPath: source) {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: harness.directory + "/" + name)
        }
        for version3 in [false, true] {
            if version3 {
                // The same snapshot as a version-3 writer wrote it (`snapshot-v3.snap`).
                try FileManager.default.removeItem(atPath: harness.directory + "/snap-0000000000000007.snap")
                try FileManager.default.copyItem(atPath: source + "/../snapshot-v3.snap",
                                                 toPath: harness.directory + "/snap-0000000000000007.snap")
            }
            let ledger = try harness.open()
            #expect(ledger.logStore?.generationFloor == 0)
            let before = try await ledger.entries()
            #expect(before.map(\.key) == ["order-42-receipt", "order-43", "order-44"])
            try ledger.close()
        }
        // Its entries restored from the snapshot carry no scope: kept, like forever ones.
        harness.clock.set(.max / 2)
        var ledger = try harness.open()
        let before = try await ledger.entries()
        try await ledger.compact()
        ledger = try harness.reopen(ledger)
        #expect(ledger.logStore?.generationFloor == 0)
        #expect(try await ledger.entries() == before)
        try ledger.close()
    }

    @Test(arguments: BackendKind.allCases)
    func theFloorIsKeptByLaterCompactionsThatDropNothing(kind: BackendKind) async throws {
        let harness = Harness(kind)
        var ledger = try harness.open()
        let tokens = Tokens()
        for round in 0..<3 {
            try await run(ledger, "k", tokens, receipt: "\(round)")
            try await ledger.forgetDoneEntryAllowingRerun("k", reason: "round \(round)")
        }
        try await ledger.compact()
        let floor = try #require(ledger.logStore?.generationFloor)
        #expect(floor == 4)
        for _ in 0..<2 {
            try await run(ledger, "other", tokens)
            try await ledger.compact()
            ledger = try harness.reopen(ledger)
            #expect(ledger.logStore?.generationFloor == floor)
        }
        try await expectFreshToken(ledger, "k", tokens)
        try ledger.close()
    }

    @Test func salvageKeepsTheFloorAndTheScopes() async throws {
        let harness = Harness(.file, clock: .init(1_000_000))
        let ledger = try harness.open()
        let tokens = Tokens()
        try await run(ledger, "gone", tokens)
        try await run(ledger, "digest", tokens, scope: .window(milliseconds: 60_000))
        try await ledger.forgetDoneEntryAllowingRerun("gone", reason: "rerun")
        try await ledger.compact()
        try ledger.close()
        let target = harness.directory + "-salvaged"
        defer { try? FileManager.default.removeItem(atPath: target) }
        let plan = Salvage.plan(try Salvage.scan(directory: harness.directory))
        #expect(plan.notCopied.isEmpty, "\(plan.notCopied)")
        _ = try await Salvage.write(plan, to: SalvageDestination(target: target))

        harness.clock.advance(60_000)
        let copy = try Ledger.open(directory: target, createIfMissing: false, clock: harness.clock.function)
        #expect(copy.logStore?.generationFloor == 2)
        try await copy.compact()
        #expect(try await copy.entries().isEmpty, "the window entry's scope came along and its window has passed")
        try await expectFreshToken(copy, "gone", tokens)
        try await expectFreshToken(copy, "digest", tokens)
        try copy.close()
    }

    @Test(arguments: BackendKind.allCases)
    func forgetAndCompactInALoopKeepsTheDirectoryBounded(kind: BackendKind) async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["ONCELEDGER_RETENTION_ROUNDS"] ?? "") ?? 8
        let harness = Harness(kind)
        let ledger = try harness.open()
        let tokens = Tokens()
        var sizes: [Int] = []
        var counts: [Int] = []
        let receipt = String(repeating: "x", count: 1_000)
        for round in 0..<rounds {
            for index in 0..<40 {
                try await run(ledger, "round-\(round)-key-\(index)", tokens, receipt: receipt)
                try await ledger.forgetDoneEntryAllowingRerun("round-\(round)-key-\(index)", reason: "done with it")
            }
            try await ledger.compact()
            counts.append(try await ledger.entryCount())
            if kind == .file { sizes.append(try directoryBytes(harness.directory)) }
        }
        #expect(counts.allSatisfy { $0 == 0 }, "entries left per round: \(counts)")
        if let first = sizes.first {
            // Each round writes ~40 KiB of receipts; none of it is live after the round.
            let bound = first + 64 * 1024
            #expect(sizes.allSatisfy { $0 <= bound }, "directory sizes per round: \(sizes)")
        }
        #expect(Set(tokens.list).count == tokens.list.count)
        try ledger.close()
    }
}

/// What the crash workload saw, kept across the simulated crashes (the world outside).
private final class TokenWorld: Sendable {
    /// Tokens of runs whose `once` returned: their effect is done (and maybe forgotten since).
    let finished = Mutex<Set<String>>([])
    let violations = Mutex<[String]>([])
}

private func retentionWorkload(_ ledger: Ledger, _ world: TokenWorld) async throws {
    for (key, scope) in [("a", DeduplicationScope.forever), ("b", .forever), ("c", .whileInFlight)] {
        let outcome = try await ledger.onceBytes(IdempotencyKey(key), scope: scope, whenPending: .retry) { effect in
            if world.finished.withLock({ $0.contains(effect.token) }) {
                world.violations.withLock { $0.append("\(key) was handed \(effect.token), the token of a finished run") }
            }
            return [1]
        }
        world.finished.withLock { _ = $0.insert(outcome.entry.token) }
        if scope == .forever {
            try await ledger.forgetDoneEntryAllowingRerun(key, reason: "run it again")
        }
    }
    try await ledger.compact()
}

@Suite struct OnceRetentionCrashTests {
    @Test func noCrashPointLosesTheGenerationFloor() async {
        let report = await LedgerCrashRunner().run(
            world: { TokenWorld() },
            workload: { ledger, world, _ in try await retentionWorkload(ledger, world) },
            check: { _, world, _ in
                if let violation = world.violations.withLock({ $0.first }) { throw CrashInvariantViolation(violation) }
            })
        #expect(report.passed, "\(report)")
        #expect(report.crashedAtPoint > 0)
        print("OnceRetentionCrashTests: \(report)")
    }
}
