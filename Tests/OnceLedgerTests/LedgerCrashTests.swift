// Proves that `once` keeps its promises across crashes (`ARCHITECTURE.md` §3, §5). Seeded random workloads
// of concurrent `once` calls over a few overlapping keys (effects that succeed, throw
// `EffectDidNotHappen` or throw another error; compactions between and during rounds; operator
// resolve and forget between rounds) run on `Ledger.open` over `SimulatedStorage` with 4–8 KiB
// segments. A reference run counts epoch 0's mutating I/O operations; then, for every operation
// index of it, the seed is rerun with `crash(afterOperations:)` at that index, then a power loss
// (`crash()`) or a process kill (`restartProcess()`), a reopen, and 3–5 more epochs (each
// fail-closed, retry, reconcile, or a per-call mix; each armed to crash at a seeded index), a clean
// final epoch, a clean close, a power loss and a last reopen. A model outside the storage, built
// only from what callers observe (each effect's start with its attempt and token, what its body
// did, what each `once` returned or threw, reconcile answers, operator acts), replays each round
// per key in attempt order and checks, after every round and every reopen: every `once` that
// returned is done with its exact receipt (until an audited forget); a started effect is
// pending-unknown or done, never absent unless its release or a resolve-absent was written;
// under fail-closed no effect starts twice, across any number of crashes, and a pending key
// throws `.pendingUnknown`; a re-run happens only under retry, only for a pending-unknown key,
// with the token of the intent it retries; nothing is reported done that no completion made.
// The loop (reference run, crash points, power loss or kill, reopen, clean close) is
// `LedgerCrashRunner`'s, from the test support; the model here is its check and workload.
//
// Determinism, honestly: the plan, the crash indices and the storage's crash choices derive
// from the seed; the interleaving of concurrent calls does not, so group-commit batching, and
// with it the operation a crash index lands on, varies between runs of one seed (epoch 0 may
// even finish before its index: counted as "finished before", not a failure). One seed in four
// runs each round's calls one after another; those runs repeat exactly.
// `ONCELEDGER_CRASH_ITERATIONS` sets the number of seeds (default 16), each crashed at every
// operation of its epoch 0; seeds are random per run and every failure prints
// `ONCELEDGER_SEED=<n>` to rerun one.
// Its compactions keep every entry (`compactKeepingEveryEntry`): the model follows a key by its
// attempts, which retention's dropping of absent entries would restart; retention's own crash
// test is `OnceRetentionCrashTests`.
import Foundation
@_spi(Benchmarks) @testable import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing
import OnceLedgerStoreContract

// MARK: - Environment

private enum LedgerCrashEnvironment {
    /// Seeds per run (`ONCELEDGER_CRASH_ITERATIONS`, default 16; `ONCELEDGER_SEED` pins one).
    static let iterations = CrashSeeds.iterations(default: 16)

    static let directory = "/ledger"
}

// MARK: - Workload

private enum CallPolicy: String, Sendable, CustomStringConvertible {
    case failClosed = "fail-closed"
    case retry
    case reconcile
    var description: String { rawValue }
}

private enum Behavior: Sendable {
    /// Returns a receipt padded with `padding` bytes (long receipts fill segments fast).
    case succeed(padding: Int)
    /// Throws `EffectDidNotHappen`: the intent is released.
    case didNotHappen
    /// Throws another error: the key stays pending-unknown.
    case fail
}

private struct PlannedCall: Sendable {
    /// Unique within the workload; part of every receipt this call makes.
    let id: Int
    let key: String
    /// `key`, with params (a fingerprint) for some keys.
    let idempotencyKey: IdempotencyKey
    let policy: CallPolicy
    let behavior: Behavior
    /// The reconcile answer this call gives if it is asked.
    let reconcileHappened: Bool
    let yields: Int
}

private enum Step {
    /// Concurrent `once` calls (one after another in serial workloads), optionally with a
    /// compaction racing them.
    case round([PlannedCall], compactDuring: Bool)
    case compact
    /// An operator resolves the `pick`-th pending key (if any).
    case resolve(pick: Int, happened: Bool)
    /// An operator forgets the `pick`-th done key (if any): it may run again, with a new token.
    case forget(pick: Int)
}

/// Every call of an epoch uses one policy, or (mixed) each call picks one.
private enum EpochMode: String, CustomStringConvertible {
    case failClosed = "fail-closed"
    case retry
    case reconcile
    case mixed
    var description: String { rawValue }
}

private struct EpochPlan {
    let mode: EpochMode
    let steps: [Step]
}

private struct PlannedEffectFailure: Error, CustomStringConvertible {
    var description: String { "planned effect failure (it may or may not have happened)" }
}

/// Everything a seed decides: configuration, keys, and each epoch's steps.
private struct Workload: CustomStringConvertible {
    let seed: UInt64
    let configuration: LogConfiguration
    let options: SimulatedStorage.Options
    let keys: [String]
    let idempotencyKeys: [String: IdempotencyKey]
    /// Run each round's calls one after another (deterministic I/O order).
    let serial: Bool
    /// Crashed epochs (epoch 0 at every operation, then seeded points); a clean final epoch follows.
    let crashedEpochs: Int

    init(seed: UInt64) {
        self.seed = seed
        var random = SeededRandom(seed: SeededRandom.derive(seed, 0x6c65_6467))
        configuration = LogConfiguration(segmentBytes: random.chance(2, in: 3) ? 4096 : 8192)
        var options = SimulatedStorage.Options()
        options.directoryOperationsMayPersist = random.chance(1, in: 2)
        self.options = options
        let keyCount = random.int(in: 3...6)
        keys = (0..<keyCount).map { index in
            index == 0 && random.chance(1, in: 2) ? "order-" + String(repeating: "k", count: random.int(in: 100...400))
                : "key-\(index)"
        }
        var idempotencyKeys: [String: IdempotencyKey] = [:]
        for (index, key) in keys.enumerated() {
            // Odd keys carry params, so entries store a fingerprint through crashes and snapshots.
            let params = ["index": index, "amount": random.int(in: 1...10_000)]
            idempotencyKeys[key] = index % 2 == 1 ? (try? IdempotencyKey(key, params: params)) ?? IdempotencyKey(key)
                : IdempotencyKey(key)
        }
        self.idempotencyKeys = idempotencyKeys
        serial = random.chance(1, in: 4)
        crashedEpochs = random.int(in: 4...6)
    }

    var description: String {
        "segmentBytes=\(configuration.segmentBytes) keys=\(keys.count) serial=\(serial) epochs=\(crashedEpochs) "
            + "directoryOperationsMayPersist=\(options.directoryOperationsMayPersist)"
    }

    /// Epoch `epoch`'s plan: a function of the seed and the epoch only, so every crash
    /// point replays the same epoch-0 workload as the reference run.
    func plan(epoch: Int) -> EpochPlan {
        var random = SeededRandom(seed: SeededRandom.derive(seed, 0x2000 + UInt64(epoch)))
        let mode: EpochMode
        if epoch == 0 {
            mode = .failClosed
        } else {
            switch random.int(below: 6) {
            case 0, 1: mode = .failClosed
            case 2, 3: mode = .retry
            case 4: mode = .reconcile
            default: mode = .mixed
            }
        }
        var steps: [Step] = []
        let rounds = epoch == 0 ? random.int(in: 6...9) : random.int(in: 2...4)
        // Epoch 0 is crashed at every operation: make sure that includes a compaction's.
        let compactionRound = epoch == 0 ? random.int(in: 2...(rounds - 1)) : -1
        for round in 0..<rounds {
            if round == compactionRound || random.chance(1, in: 6) { steps.append(.compact) }
            if epoch > 0 {
                if random.chance(1, in: 4) { steps.append(.resolve(pick: random.int(below: 8), happened: random.chance(1, in: 2))) }
                if random.chance(1, in: 10) { steps.append(.forget(pick: random.int(below: 8))) }
            }
            let calls = (0..<random.int(in: 2...8)).map { index -> PlannedCall in
                let behavior: Behavior
                switch random.int(below: 20) {
                case 0..<14: behavior = .succeed(padding: random.chance(1, in: 3) ? random.int(in: 100...700) : 0)
                case 14..<17: behavior = .didNotHappen
                default: behavior = .fail
                }
                let policy: CallPolicy = switch mode {
                case .failClosed: .failClosed
                case .retry: .retry
                case .reconcile: .reconcile
                case .mixed: random.element(of: [.failClosed, .retry, .reconcile])
                }
                let key = random.element(of: keys)
                return PlannedCall(id: (epoch << 16) | (round << 8) | index, key: key,
                                   idempotencyKey: idempotencyKeys[key]!, policy: policy,
                                   behavior: behavior, reconcileHappened: random.chance(1, in: 2),
                                   yields: random.int(in: 0...2))
            }
            steps.append(.round(calls, compactDuring: random.chance(1, in: 8)))
        }
        return EpochPlan(mode: mode, steps: steps)
    }
}

// MARK: - What callers observe

private struct StartInfo: Sendable {
    var key: String
    var attempt: UInt32
    var generation: UInt32
    var token: String
    /// The ledger's token scope the effect saw (the same on every open of one ledger).
    var scope: TokenScope
}

private enum BodyOutcome: Sendable, Equatable {
    case returned(String)
    case didNotHappen
    case failed
}

private enum ReconcileReply: Sendable, Equatable {
    case happened(String)
    case didNotHappen
}

private enum CallResult: Sendable {
    case returned(receipt: String, entry: EntryInfo, performed: Bool)
    case didNotHappen
    case ledgerError(LedgerError)
    case otherError(String)

    var isStorageFailure: Bool {
        if case .ledgerError(let error) = self { return error.code == .io || error.code == .poisoned }
        return false
    }
}

/// What one `once` call saw: its effect's start and outcome, its reconcile question, its result.
private struct CallState: Sendable {
    var start: StartInfo?
    var body: BodyOutcome?
    var asked: EntryInfo?
    var reply: ReconcileReply?
    var result: CallResult?
}

private final class RoundLog: Sendable {
    private let states: Mutex<[CallState]>
    let compactionError = Mutex<String?>(nil)

    init(count: Int) { states = Mutex(Array(repeating: CallState(), count: count)) }

    func update(_ index: Int, _ change: (inout CallState) -> Void) {
        states.withLock { change(&$0[index]) }
    }

    var snapshot: [CallState] { states.withLock { $0 } }
}

private func decodeReceipt(_ bytes: [UInt8]) -> String? {
    try? JSONDecoder().decode(String.self, from: Data(bytes))
}

/// One `once` call of the workload, recording everything it observes.
private func performCall(_ call: PlannedCall, index: Int, ledger: Ledger, log: RoundLog) async {
    let whenPending: PendingPolicy<String>
    switch call.policy {
    case .failClosed: whenPending = .failClosed
    case .retry: whenPending = .retry
    case .reconcile:
        whenPending = .reconcile { entry in
            let reply: ReconcileReply = call.reconcileHappened
                ? .happened("\(call.key)|reconciled|a\(entry.attempt)|c\(call.id)") : .didNotHappen
            log.update(index) { state in
                state.asked = entry
                state.reply = reply
            }
            switch reply {
            case .happened(let receipt): return .happened(receipt)
            case .didNotHappen: return .didNotHappen
            }
        }
    }
    do {
        let outcome = try await ledger.once(call.idempotencyKey, as: String.self, whenPending: whenPending) { context in
            log.update(index) {
                $0.start = StartInfo(key: context.key, attempt: context.attempt, generation: context.generation,
                                     token: context.token, scope: context.tokenScope)
            }
            for _ in 0..<call.yields { await Task.yield() }
            switch call.behavior {
            case .succeed(let padding):
                let receipt = "\(call.key)|a\(context.attempt)|\(context.token)|c\(call.id)|"
                    + String(repeating: "r", count: padding)
                log.update(index) { $0.body = .returned(receipt) }
                return receipt
            case .didNotHappen:
                log.update(index) { $0.body = .didNotHappen }
                throw EffectDidNotHappen("planned: nothing external was done")
            case .fail:
                log.update(index) { $0.body = .failed }
                throw PlannedEffectFailure()
            }
        }
        log.update(index) {
            $0.result = .returned(receipt: outcome.receipt, entry: outcome.entry, performed: outcome.wasPerformed)
        }
    } catch let error as LedgerError where error.code == .released {
        log.update(index) { $0.result = .didNotHappen }
    } catch let error as LedgerError {
        log.update(index) { $0.result = .ledgerError(error) }
    } catch {
        log.update(index) { $0.result = .otherError("\(type(of: error)): \(error)") }
    }
}

private func runCompaction(_ ledger: Ledger, log: RoundLog) async {
    do {
        try await compactKeepingEveryEntry(ledger)
    } catch {
        log.compactionError.withLock { $0 = "\(error)" }
    }
}

/// A compaction that drops no entry: the model follows each key by its attempts, which a
/// dropped entry would restart at 1 (retention and its crash safety are `OnceRetentionTests`').
private func compactKeepingEveryEntry(_ ledger: Ledger) async throws {
    let store = (ledger.store as? FileStore)?.store ?? (ledger.store as? InMemoryStore)?.store
    guard let store else { throw LedgerError(.invalidArgument, "not a store of this package") }
    try await store.compact(nowMilliseconds: nil, beforeReadingReceipt: nil)
}

// MARK: - Model

/// A key's state as the model expects to read it back.
private struct Expect: Hashable, Sendable, CustomStringConvertible {
    enum Status: String, Sendable { case absent, pending, done }
    var status: Status
    var attempt: UInt32
    var generation: UInt32
    var receipt: String?

    static let never = Expect(status: .absent, attempt: 0, generation: 0, receipt: nil)

    static func pending(_ attempt: UInt32, _ generation: UInt32) -> Expect {
        Expect(status: .pending, attempt: attempt, generation: generation, receipt: nil)
    }

    static func absent(_ attempt: UInt32, _ generation: UInt32) -> Expect {
        Expect(status: .absent, attempt: attempt, generation: generation, receipt: nil)
    }

    static func done(_ attempt: UInt32, _ generation: UInt32, _ receipt: String) -> Expect {
        Expect(status: .done, attempt: attempt, generation: generation, receipt: receipt)
    }

    /// Whether the ledger's entry (nil: never seen) is this state.
    func matches(_ info: EntryInfo?) -> Bool {
        guard let info else { return self == .never }
        guard info.attempt == attempt && info.generation == generation else { return false }
        switch status {
        case .absent: return info.status == .absent
        case .pending: return info.status == .pendingUnknown
        case .done: return info.status == .done && decodeReceipt(info.receipt) == receipt
        }
    }

    var description: String {
        "\(status.rawValue)(attempt \(attempt), generation \(generation)"
            + (receipt.map { ", receipt \"\($0.prefix(60))\"" } ?? "") + ")"
    }
}

private func describe(_ info: EntryInfo?) -> String {
    guard let info else { return "no entry" }
    var text = "\(info.status.rawValue)(attempt \(info.attempt), generation \(info.generation)"
    if info.status == .done { text += ", receipt \"\(decodeReceipt(info.receipt).map { String($0.prefix(60)) } ?? "<undecodable>")\"" }
    return text + ")"
}

/// Per key, across every epoch.
private struct KeyModel {
    /// The state known to be durable.
    var current = Expect.never
    /// After a crash: every state the key may be in (from `current` on, in the order the
    /// ledger would have written them); the next reopen must show one of them.
    var candidates: [Expect]?
    /// The token each started attempt's effect received.
    var tokens: [UInt32: String] = [:]
}

/// A `once` that returned: its key must stay done with this receipt while the generation lasts.
private struct ReturnedOnce {
    let key: String
    let receipt: String
    let generation: UInt32
    let at: String
}

/// What a round did to one key: the states it went through from `current`, in order, and
/// the last one the callers' observations prove durable.
private struct KeyWalk {
    var chain: [Expect]
    var proven: Int
    /// Bodies that ran again for a pending-unknown key (retry policy).
    var retries: Int
    var problems: [String]
}

/// Replays one round's observations for `key`, ordered by attempt (the ledger runs one
/// operation per key at a time, so a key's records form one chain; tasks may *record*
/// their observations out of order, which is why this runs after the round).
///
/// Proof that a state is durable: a body started (its intent), a `once` returned its receipt
/// (the completion or resolve), the runner threw `EffectDidNotHappen` (the release), a body
/// started after a reconcile "did not happen" (the resolve-absent). A call that failed on
/// storage may have written one more intent (pending with the next attempt).
private func walk(key: String, from current: Expect, calls: [(PlannedCall, CallState)], dead: Bool,
                  tokens: [UInt32: String]) -> KeyWalk {
    var problems: [String] = []
    var starts: [UInt32: Int] = [:]
    for (index, (_, state)) in calls.enumerated() {
        guard let start = state.start else { continue }
        if starts[start.attempt] != nil {
            problems.append("two effect bodies started with attempt \(start.attempt)")
        }
        starts[start.attempt] = index
    }
    var asks: [UInt32: [Int]] = [:]
    for (index, (_, state)) in calls.enumerated() {
        if let asked = state.asked { asks[asked.attempt, default: []].append(index) }
    }
    var returnedReceipts = Set<String>()
    for (_, state) in calls {
        if case .returned(let receipt, _, _)? = state.result { returnedReceipts.insert(receipt) }
    }
    let storageFailures = calls.filter { $0.1.result?.isStorageFailure == true }.map { $0.0 }
    var usedStarts = Set<UInt32>()
    var usedBodies = Set<UInt32>()
    var usedAsks = Set<UInt32>()
    var retries = 0
    var chain = [current]
    var proven = 0
    var state = current

    /// A body started from `from`: check it was allowed and got the right token.
    func checkStart(_ index: Int, from: Expect) {
        let start = calls[index].1.start!
        let policy = calls[index].0.policy
        let expectedToken = EffectToken.derive(key: key, generation: from.generation, scope: start.scope)
        if !start.scope.isLedgerScoped { problems.append("a new ledger's tokens are not ledger-scoped") }
        if start.key != key { problems.append("the effect got key \"\(start.key)\"") }
        if start.generation != from.generation || start.token != expectedToken {
            problems.append("attempt \(start.attempt) ran with generation \(start.generation) token \(start.token), "
                + "expected generation \(from.generation) token \(expectedToken) (from \(from))")
        }
        if from.status == .pending {
            retries += 1
            if policy != .retry {
                problems.append("the effect ran again (attempt \(start.attempt)) under \(policy) while the key was "
                    + "\(from): only a retry may re-run a pending-unknown key")
            }
            if let previous = tokens[from.attempt], previous != start.token {
                problems.append("a retry of attempt \(from.attempt) got token \(start.token), but that intent's effect got "
                    + "\(previous): a retry must reuse the token")
            }
        }
    }

    walking: while true {
        switch state.status {
        case .done:
            break walking
        case .absent:
            let next = Expect.pending(state.attempt + 1, state.generation)
            if let index = starts[next.attempt] {
                usedStarts.insert(next.attempt)
                checkStart(index, from: state)
                chain.append(next)
                proven = chain.count - 1
                state = next
            } else {
                // An intent whose call then failed on storage may or may not be on disk.
                if !storageFailures.isEmpty { chain.append(next) }
                break walking
            }
        case .pending:
            let attempt = state.attempt
            if let index = starts[attempt], !usedBodies.contains(attempt) {
                usedBodies.insert(attempt)
                let (_, call) = calls[index]
                switch call.body {
                case .returned(let receipt)?:
                    let next = Expect.done(attempt, state.generation, receipt)
                    chain.append(next)
                    if returnedReceipts.contains(receipt) { proven = chain.count - 1 }
                    state = next
                    continue walking
                case .didNotHappen?:
                    let next = Expect.absent(attempt, state.generation)
                    chain.append(next)
                    if case .didNotHappen? = call.result { proven = chain.count - 1 }
                    state = next
                    continue walking
                case .failed?:
                    break
                case nil:
                    problems.append("the effect of attempt \(attempt) started but never finished")
                    break walking
                }
            }
            let askers = usedAsks.contains(attempt) ? [] : asks[attempt] ?? []
            usedAsks.insert(attempt)
            for index in askers where !state.matches(calls[index].1.asked) {
                problems.append("reconcile was asked about \(describe(calls[index].1.asked)) but the key was \(state)")
            }
            // Several questions about one attempt: only after a crash (the first answer's write
            // failed and poisoned the ledger), so none of them can lead anywhere proven.
            let extraQuestions = askers.count > 1
                ? "reconcile was asked \(askers.count) times about attempt \(attempt), yet the key moved on" : nil
            if let extraQuestions, !dead { problems.append(extraQuestions) }
            // A proven way out of pending: a reconcile "happened" whose receipt a once returned, a
            // reconcile "did not happen" whose caller then started the effect, or a retry's start.
            if let index = askers.first(where: { index in
                if case .happened(let receipt)? = calls[index].1.reply { return returnedReceipts.contains(receipt) }
                return false
            }), case .happened(let receipt)? = calls[index].1.reply {
                if let extraQuestions, dead { problems.append(extraQuestions) }
                let next = Expect.done(attempt, state.generation, receipt)
                chain.append(next)
                proven = chain.count - 1
                state = next
                continue walking
            }
            if askers.contains(where: { calls[$0].1.reply == .didNotHappen && starts[attempt + 1] == $0 }) {
                if let extraQuestions, dead { problems.append(extraQuestions) }
                let next = Expect.absent(attempt, state.generation)
                chain.append(next)
                proven = chain.count - 1
                state = next
                continue walking
            }
            let next = Expect.pending(attempt + 1, state.generation)
            if let index = starts[next.attempt] {
                if !askers.isEmpty {
                    problems.append("reconcile was asked about attempt \(attempt), yet another call ran attempt \(next.attempt)")
                }
                usedStarts.insert(next.attempt)
                checkStart(index, from: state)
                chain.append(next)
                proven = chain.count - 1
                state = next
                continue walking
            }
            // Nothing proven: after a crash, whichever of these writes came first (the one the
            // crash failed; the poisoned ledger refused the rest) may be on disk.
            var alternatives: [Expect] = []
            for index in askers {
                switch calls[index].1.reply {
                case .happened(let receipt)?:
                    alternatives.append(.done(attempt, state.generation, receipt))
                case .didNotHappen?:
                    // The resolve-absent, or it and then the intent of the run it allows.
                    alternatives.append(.absent(attempt, state.generation))
                    alternatives.append(next)
                case nil:
                    problems.append("reconcile was asked about attempt \(attempt) but did not answer")
                }
            }
            if storageFailures.contains(where: { $0.policy == .retry }) { alternatives.append(next) }
            for alternative in alternatives where !chain.contains(alternative) { chain.append(alternative) }
            break walking
        }
    }
    for (attempt, index) in starts where !usedStarts.contains(attempt) {
        let start = calls[index].1.start!
        problems.append("an effect started (attempt \(start.attempt), token \(start.token)) while the key went through "
            + "\(chain.map(\.description).joined(separator: " → ")): the ledger ran it when it must not")
    }
    for index in asks.filter({ !usedAsks.contains($0.key) }).values.joined() {
        // After a crash, a key whose completion failed is still pending in memory, so a
        // later call may ask about it; its resolve is refused (the ledger is poisoned).
        if !dead || calls[index].1.result?.isStorageFailure != true {
            problems.append("reconcile was asked about \(describe(calls[index].1.asked)) which the key never was "
                + "(the call got \(calls[index].1.result.map(summary) ?? "nothing"))")
        }
    }
    for receipt in returnedReceipts where !chain[...proven].contains(where: { $0.receipt == receipt }) {
        problems.append("a once returned receipt \"\(receipt.prefix(60))\" that no completion or resolve of this key made")
    }
    if !dead && proven != chain.count - 1 {
        problems.append("no crash, yet the callers cannot tell whether \(chain[(proven + 1)...].map(\.description)) happened")
    }
    return KeyWalk(chain: chain, proven: proven, retries: retries, problems: problems)
}

/// Checks what each call of a key returned or threw against what the round did.
private func checkResults(key: String, roundStart: Expect, calls: [(PlannedCall, CallState)],
                          walk: KeyWalk, dead: Bool) -> [String] {
    var problems: [String] = []
    let allFailClosed = calls.allSatisfy { $0.0.policy == .failClosed }
    for (call, state) in calls {
        let who = "call c\(call.id) (\(call.policy))"
        let policy = call.policy
        guard let result = state.result else {
            problems.append("\(who) never finished")
            continue
        }
        if allFailClosed && roundStart.status == .pending {
            // Nothing may run a pending key under fail-closed: every call throws .pendingUnknown.
            guard case .ledgerError(let error) = result, error.code == .pendingUnknown, roundStart.matches(error.entry) else {
                problems.append("\(who) under fail-closed on \(roundStart) got \(result) instead of .pendingUnknown with that entry")
                continue
            }
        }
        switch result {
        case .returned(let receipt, let entry, let performed):
            if entry.status != .done || decodeReceipt(entry.receipt) != receipt {
                problems.append("\(who) returned \"\(receipt.prefix(60))\" with entry \(describe(entry))")
            }
            if performed {
                guard let start = state.start, state.body == .returned(receipt), entry.attempt == start.attempt else {
                    problems.append("\(who) returned .performed(\"\(receipt.prefix(60))\") but its effect returned \(String(describing: state.body))")
                    continue
                }
            } else if state.start != nil {
                problems.append("\(who) ran its effect but returned .alreadyDone")
            }
        case .didNotHappen:
            // Only from its own effect: a waiter whose runner failed decides again, it is
            // never handed another caller's error.
            if state.start == nil || state.body != .didNotHappen {
                problems.append("\(who) threw .released but its own effect did not throw EffectDidNotHappen")
            }
        case .ledgerError(let error):
            switch error.code {
            case .effectFailed:
                if state.start == nil || state.body != .failed {
                    problems.append("\(who) threw .effectFailed but its own effect did not fail: \(error)")
                }
            case .pendingUnknown:
                if policy != .failClosed {
                    problems.append("\(who) threw .pendingUnknown: \(error)")
                } else if !walk.chain[...walk.proven].contains(where: { $0.status == .pending && $0.matches(error.entry) }) {
                    problems.append("\(who) threw .pendingUnknown with \(describe(error.entry)), a state the key was not in")
                }
            case .io, .poisoned:
                if !dead { problems.append("\(who) failed on storage without a crash: \(error)") }
            default:
                problems.append("\(who) threw an unexpected \(error)")
            }
        case .otherError(let text):
            problems.append("\(who) threw a non-ledger error: \(text)")
        }
    }
    return problems
}

// MARK: - One crash point

/// The workload's own counts (the runner counts crash points, opens and crashes).
private struct Totals: Sendable {
    var effectStarts = 0
    var retries = 0
    var pendingAfterReopen = 0
    var serialSeeds = 0
    var reconcileAnswers = 0

    static func += (lhs: inout Totals, rhs: Totals) {
        lhs.effectStarts += rhs.effectStarts
        lhs.retries += rhs.retries
        lhs.pendingAfterReopen += rhs.pendingAfterReopen
        lhs.serialSeeds += rhs.serialSeeds
        lhs.reconcileAnswers += rhs.reconcileAnswers
    }
}

/// Where every crash-point run of every seed adds its counts.
private final class TotalsSink: Sendable {
    let totals = Mutex(Totals())
}

/// The model of one run of a seed (the runner's world: one per crash point, kept across its
/// epochs): what callers observed, checked after every round and every reopen. The runner
/// opens, crashes and reopens the ledger; `check` and `runEpoch` are its check and workload.
private final class LedgerModel {
    let workload: Workload
    /// Counts of crash-point runs go here (the reference run's are not counted).
    let sink: TotalsSink
    var keys: [String: KeyModel] = [:]
    var returned: [ReturnedOnce] = []
    var totals = Totals()
    var current: LedgerCrashRunner.Epoch!
    var stepIndex = 0
    var problems: [String] = []

    init(workload: Workload, sink: TotalsSink) {
        self.workload = workload
        self.sink = sink
        for key in workload.keys { keys[key] = KeyModel() }
    }

    var storage: SimulatedStorage { current.storage }
    var epoch: Int { current.index }

    func fail(_ problems: [String]) {
        self.problems = problems.map { "\($0) [step \(stepIndex)]" }
    }

    /// Starts a runner call (a check or an epoch's workload).
    func enter(_ epoch: LedgerCrashRunner.Epoch) {
        current = epoch
        problems = []
    }

    /// Ends a runner call: counts (crash-point runs only), and throws what a check found.
    func leave() throws {
        if current.crashPoint != nil {
            let counted = totals
            sink.totals.withLock { $0 += counted }
        }
        totals = Totals()
        if !problems.isEmpty { throw CrashInvariantViolation(problems: problems) }
    }

    /// After every open (and at the end, after a clean close and a power loss).
    func check(_ ledger: Ledger, _ epoch: LedgerCrashRunner.Epoch) async throws {
        enter(epoch)
        if !epoch.isEnd { stepIndex = 0 }
        _ = await checkRecovery(ledger)
        try leave()
    }

    /// One epoch's plan, step by step, until a step fails a check or the process dies.
    func runEpoch(_ ledger: Ledger, _ epoch: LedgerCrashRunner.Epoch) async throws {
        enter(epoch)
        let plan = workload.plan(epoch: epoch.index)
        epoch.note("e\(epoch.index) \(plan.mode)")
        for (index, step) in plan.steps.enumerated() {
            stepIndex = index
            guard await run(step, ledger: ledger) else { break }
            if storage.processIsDead { break }
        }
        try leave()
    }

    /// A pending or done entry stores its key's params fingerprint.
    func fingerprintProblem(_ key: String, _ info: EntryInfo?) -> String? {
        guard let info, info.status != .absent else { return nil }
        let expected = workload.idempotencyKeys[key]!.fingerprint
        return info.fingerprint == expected ? nil
            : "\"\(key.prefix(20))\" is \(describe(info)) with fingerprint \(Hex.string(info.fingerprint)), expected \(Hex.string(expected))"
    }

    /// After open: every key is in a state the model allows; returned receipts are there.
    func checkRecovery(_ ledger: Ledger) async -> Bool {
        var problems: [String] = []
        for key in workload.keys {
            let info = await ledger.checkedEntry(key)
            if let problem = fingerprintProblem(key, info) { problems.append("after reopen \(problem)") }
            let allowed = keys[key]!.candidates ?? [keys[key]!.current]
            guard let match = allowed.first(where: { $0.matches(info) }) else {
                problems.append("after reopen \"\(key.prefix(20))\" is \(describe(info)) but the model allows only "
                    + "\(allowed.map(\.description).joined(separator: " or "))")
                continue
            }
            if match.status == .pending && keys[key]!.candidates != nil { totals.pendingAfterReopen += 1 }
            keys[key]!.current = match
            keys[key]!.candidates = nil
        }
        let unknown = await ledger.checkedEntries().map(\.key).filter { keys[$0] == nil }
        if !unknown.isEmpty { problems.append("after reopen the ledger has keys nobody used: \(unknown)") }
        problems += await checkReturned(ledger)
        let pending = Set(await ledger.checkedEntries(status: .pendingUnknown).map(\.key))
        let expected = Set(workload.keys.filter { keys[$0]!.current.status == .pending })
        if pending != expected { problems.append("pendingEntries() lists \(pending.sorted()), the model \(expected.sorted())") }
        if !problems.isEmpty {
            fail(problems)
            return false
        }
        return true
    }

    /// Every `once` that returned, in the key's current generation, is done with its receipt.
    func checkReturned(_ ledger: Ledger) async -> [String] {
        var problems: [String] = []
        for once in returned where keys[once.key]!.current.generation == once.generation {
            let info = await ledger.checkedEntry(once.key)
            if info?.status != .done || decodeReceipt(info!.receipt) != once.receipt {
                problems.append("a once that returned \"\(once.receipt.prefix(60))\" (\(once.at)) reads back as \(describe(info))")
            }
        }
        return problems
    }

    /// Runs one step; false after a failed check.
    func run(_ step: Step, ledger: Ledger) async -> Bool {
        switch step {
        case .compact:
            do {
                try await compactKeepingEveryEntry(ledger)
            } catch {
                if !storage.processIsDead {
                    fail(["compaction failed without a crash: \(error)"])
                    return false
                }
            }
            return true
        case .resolve(let pick, let happened):
            let candidates = workload.keys.filter { keys[$0]!.current.status == .pending }
            guard !candidates.isEmpty else { return true }
            let key = candidates[pick % candidates.count]
            let from = keys[key]!.current
            let receipt = "\(key)|resolved|a\(from.attempt)|e\(epoch)s\(stepIndex)"
            let next = happened ? Expect.done(from.attempt, from.generation, receipt) : .absent(from.attempt, from.generation)
            let encoded = Array("\"\(receipt)\"".utf8)
            return await operatorAct(key: key, from: from, to: next, ledger: ledger) {
                try await ledger.resolvePending(key, as: happened ? .done(receipt: encoded) : .absent,
                                                reason: "crash test: operator checked downstream", actor: "crash-test")
            }
        case .forget(let pick):
            let candidates = workload.keys.filter { keys[$0]!.current.status == .done }
            guard !candidates.isEmpty else { return true }
            let key = candidates[pick % candidates.count]
            let from = keys[key]!.current
            return await operatorAct(key: key, from: from, to: .absent(from.attempt, from.generation + 1), ledger: ledger) {
                try await ledger.forgetDoneEntryAllowingRerun(key, reason: "crash test: allow a re-run", actor: "crash-test")
            }
        case .round(let calls, let compactDuring):
            return await runRound(calls, compactDuring: compactDuring, ledger: ledger)
        }
    }

    func operatorAct(key: String, from: Expect, to next: Expect, ledger: Ledger,
                              _ act: () async throws -> Void) async -> Bool {
        do {
            try await act()
        } catch {
            if storage.processIsDead {
                keys[key]!.candidates = [from, next]
                return true
            }
            fail(["an operator act on \(from) failed without a crash: \(error)"])
            return false
        }
        keys[key]!.current = next
        let after = await ledger.checkedEntry(key)
        if !next.matches(after) {
            fail(["after the operator act \"\(key.prefix(20))\" is \(describe(after)), expected \(next)"])
            return false
        }
        return true
    }

    func runRound(_ calls: [PlannedCall], compactDuring: Bool, ledger: Ledger) async -> Bool {
        let log = RoundLog(count: calls.count)
        if workload.serial {
            for (index, call) in calls.enumerated() {
                if compactDuring && index == calls.count / 2 { await runCompaction(ledger, log: log) }
                await performCall(call, index: index, ledger: ledger, log: log)
            }
        } else {
            await withTaskGroup(of: Void.self) { group in
                for (index, call) in calls.enumerated() {
                    group.addTask { await performCall(call, index: index, ledger: ledger, log: log) }
                    if compactDuring && index == calls.count / 2 {
                        group.addTask { await runCompaction(ledger, log: log) }
                    }
                }
            }
        }
        let dead = storage.processIsDead
        let states = log.snapshot
        var problems: [String] = []
        if let error = log.compactionError.withLock({ $0 }), !dead {
            problems.append("a compaction during the round failed without a crash: \(error)")
        }
        for key in workload.keys {
            let mine = zip(calls, states).filter { $0.0.key == key }
            let from = keys[key]!.current
            let walked = walk(key: key, from: from, calls: mine, dead: dead, tokens: keys[key]!.tokens)
            var keyProblems = walked.problems
            totals.retries += walked.retries
            keyProblems += checkResults(key: key, roundStart: from, calls: mine, walk: walked, dead: dead)
            for (_, state) in mine {
                guard let start = state.start else { continue }
                keys[key]!.tokens[start.attempt] = start.token
                totals.effectStarts += 1
            }
            for (_, state) in mine where state.reply != nil {
                totals.reconcileAnswers += 1
            }
            for (call, state) in mine {
                if case .returned(let receipt, let entry, _)? = state.result {
                    returned.append(ReturnedOnce(key: key, receipt: receipt, generation: entry.generation,
                                                 at: "epoch \(epoch) step \(stepIndex) call c\(call.id)"))
                }
            }
            if dead {
                keys[key]!.candidates = Array(walked.chain[walked.proven...])
            } else {
                keys[key]!.current = walked.chain.last!
                let info = await ledger.checkedEntry(key)
                if let problem = fingerprintProblem(key, info) { keyProblems.append("after the round \(problem)") }
                if !walked.chain.last!.matches(info) {
                    keyProblems.append("after the round the ledger shows \(describe(info)), the model \(walked.chain.last!)")
                }
            }
            problems += keyProblems.map { "\"\(key.prefix(20))\": \($0)" }
        }
        if !problems.isEmpty {
            let observed = zip(calls, states).map { call, state in
                "c\(call.id) \(call.key.prefix(12)) \(call.policy) \(call.behavior) start=\(state.start.map { "a\($0.attempt)" } ?? "-") "
                    + "body=\(state.body.map { "\($0)" } ?? "-") result=\(state.result.map(summary) ?? "-")"
            }
            problems.append("the round\(dead ? " (crashed)" : ""): \(observed.joined(separator: "; "))")
            fail(problems)
            return false
        }
        if dead { current.note("crashed in step \(stepIndex)") }
        return true
    }
}

private func summary(_ result: CallResult) -> String {
    switch result {
    case .returned(_, let entry, let performed): return (performed ? "performed" : "alreadyDone") + " a\(entry.attempt)"
    case .didNotHappen: return "didNotHappen"
    case .ledgerError(let error): return ".\(error.code)"
    case .otherError(let text): return "other(\(text))"
    }
}

// MARK: - Tests

@Suite struct LedgerCrashTests {
    @Test func onceSurvivesACrashAtEveryOperation() async {
        let seeds = CrashSeeds.seeds(LedgerCrashEnvironment.iterations)
        let sink = TotalsSink()
        let report = await withTaskGroup(of: LedgerCrashRunner.Report.self) { group in
            for seed in seeds {
                group.addTask { await LedgerCrashTests.runSeed(seed, sink: sink) }
            }
            var report = LedgerCrashRunner.Report()
            for await result in group { report += result }
            return report
        }
        let totals = sink.totals.withLock { $0 }
        print("LedgerCrashTests: \(seeds.count) seeds (\(totals.serialSeeds) serial), \(report.crashPoints) crash points "
            + "(\(report.crashedAtPoint) crashed epoch 0, \(report.finishedBeforePoint) finished it before their index, "
            + "the rest reached its close), "
            + "\(report.opens) reopens, \(totals.effectStarts) effect starts, \(totals.retries) retries, "
            + "\(totals.reconcileAnswers) reconcile answers, "
            + "\(totals.pendingAfterReopen) keys pending-unknown after a crash; "
            + "the reference epochs 0 created \(report.referenceFilesCreated) files")
    }

    /// The reference run, then every crash point of its epoch 0 (`LedgerCrashRunner`, with this
    /// seed's configuration and epoch count); stops at the first failure.
    fileprivate static func runSeed(_ seed: UInt64, sink: TotalsSink) async -> LedgerCrashRunner.Report {
        let workload = Workload(seed: seed)
        if workload.serial { sink.totals.withLock { $0.serialSeeds += 1 } }
        let runner = LedgerCrashRunner(
            seeds: [seed], configuration: workload.configuration, storageOptions: workload.options,
            crashedReruns: workload.crashedEpochs - 1, directory: LedgerCrashEnvironment.directory, clock: { 1_000 })
        let report = await runner.run(
            world: { LedgerModel(workload: workload, sink: sink) },
            workload: { ledger, model, epoch in try await model.runEpoch(ledger, epoch) },
            check: { ledger, model, epoch in try await model.check(ledger, epoch) })
        for failure in report.failures {
            for problem in failure.problems.prefix(6) {
                Issue.record("\(problem) — \(failure.context) (\(workload))")
            }
        }
        return report
    }
}

extension Ledger {
    /// `entry(_:)` for the model checks, which report problems rather than throw: a read
    /// that throws is recorded as an issue and reads as no entry.
    func checkedEntry(_ key: String) async -> EntryInfo? {
        do { return try await entry(key) } catch {
            Issue.record("reading \(key) threw \(error)")
            return nil
        }
    }

    /// `entries(status:)` for the model checks (a read that throws is recorded as an issue).
    func checkedEntries(status: EntryInfo.Status? = nil) async -> [EntryInfo] {
        do { return try await entries(status: status) } catch {
            Issue.record("listing entries threw \(error)")
            return []
        }
    }
}
