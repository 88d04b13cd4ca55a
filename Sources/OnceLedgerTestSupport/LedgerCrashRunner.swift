import OnceLedger
import Synchronization

/// Crash-tests effect code that uses `Ledger.once`: your workload runs on a ledger over
/// `SimulatedStorage`, crashed at every mutating I/O operation it makes, reopened and run
/// again, and your invariant is checked after every reopen and at the end.
///
/// For each seed:
///
/// 1. **Reference run.** A fresh world (`world`), a new ledger, `check`, the workload
///    once without a crash; the number of mutating operations (writes, syncs, creates,
///    renames, …, counted from the ledger's creation) is the seed's crash-point range.
///    Then the end below.
/// 2. **Every crash point** `n` in `0...operations`, each on a fresh storage and a fresh
///    world: the first run (epoch 0) is armed to crash after `n` operations; the process
///    dies there (a write in flight leaves a random prefix). Then the process ends — a
///    power loss (`SimulatedStorage.crash()`: unsynced writes kept, dropped, torn or
///    garbled, unsynced directory operations reverted) or, one time in four, a process
///    kill that keeps the page cache (`restartProcess()`). The ledger is reopened,
///    `check`ed and the workload runs again: `crashedReruns` more times, each armed to
///    crash at a seeded operation, then once more without a crash (the final run).
/// 3. **The end.** After the final run: a clean `close()`, a power loss, a reopen and
///    `check` with `epoch.isEnd` true — where the workload's job must be complete.
///
/// A run stops at its first failure, and a seed at its first failing crash point. Every
/// failure is a ``LedgerCrashFailure`` naming the seed, crash point, epoch and the
/// run's history, is printed, and ends with `ONCELEDGER_SEED=<seed>`, which reruns
/// that seed alone.
///
/// ## What counts as a failure
///
/// - `check` throws (throw ``CrashInvariantViolation`` with a message; any error counts).
/// - The workload throws while the simulated process is alive (after the crash fired, a
///   thrown error is the crash itself and ends the epoch), or throws a
///   ``CrashInvariantViolation`` at any time. So the workload must handle what it expects:
///   `.pendingUnknown` under `.failClosed`, `.released` after `EffectDidNotHappen`.
/// - The ledger refuses to open after an ordinary crash, or a clean close fails.
///
/// ## Determinism
///
/// Seeds default to ``CrashSeeds/fixed(_:)`` (`1...ONCELEDGER_CRASH_ITERATIONS`, default 4),
/// so every run tests the same cases; `ONCELEDGER_SEED=<n>` runs seed `n` alone and
/// overrides `seeds`. The crash points, the storage's crash choices, the kills and the
/// ledger's id (so every effect token) derive from the seed, and the clock is fixed. A
/// workload that calls `once` one call at a time repeats exactly; concurrent calls
/// interleave as the scheduler runs them, and the ledger's I/O thread batches them as they
/// come, so the operation a crash point lands on can vary between runs of one seed.
///
/// ## Speed
///
/// ``fastConfiguration`` starts segments at 8 KiB (up to 128 KiB, so a 64 KiB receipt
/// still fits): `SimulatedStorage` zero-fills each new segment in memory, and a default
/// 256 KiB one would cost far more than the workload. Seeds run concurrently.
public struct LedgerCrashRunner: Sendable {
    /// The seeds to run (each its own reference run and crash points).
    /// `ONCELEDGER_SEED` replaces them with that one seed.
    public var seeds: [UInt64]
    /// The ledger's configuration; without a `newLedgerIdentity`, one derived from the
    /// seed is used, so tokens repeat between runs of a seed.
    public var configuration: LogConfiguration
    /// The simulated disk's crash model (see `SimulatedStorage.Options`).
    public var storageOptions: SimulatedStorage.Options
    /// Runs after the first one that are crashed at a seeded operation before the final,
    /// uncrashed run (negative counts as 0).
    public var crashedReruns: Int
    /// The ledger's directory on the simulated disk.
    public var directory: String
    /// The ledger's clock (milliseconds): fixed by default, so runs repeat.
    public var clock: @Sendable () -> UInt64

    /// Small segments and no idle polling: fast on `SimulatedStorage`, and receipts up to
    /// the 64 KiB limit still fit.
    public static var fastConfiguration: LogConfiguration {
        var configuration = LogConfiguration(segmentBytes: 128 << 10)
        configuration.initialSegmentBytes = 8 << 10
        configuration.idleSpinMicroseconds = 0
        return configuration
    }

    public init(
        seeds: [UInt64] = CrashSeeds.fixed(CrashSeeds.iterations(default: 4)),
        configuration: LogConfiguration = LedgerCrashRunner.fastConfiguration,
        storageOptions: SimulatedStorage.Options = SimulatedStorage.Options(),
        crashedReruns: Int = 1,
        directory: String = "/ledger",
        clock: @escaping @Sendable () -> UInt64 = { 1_000 }
    ) {
        self.seeds = seeds
        self.configuration = configuration
        self.storageOptions = storageOptions
        self.crashedReruns = crashedReruns
        self.directory = directory
        self.clock = clock
    }

    /// One run of the workload on an open ledger: which seed and crash point, which
    /// epoch, and the simulated disk.
    public struct Epoch: Sendable, CustomStringConvertible {
        public let seed: UInt64
        /// The operation epoch 0 is armed to crash after; nil in the reference run.
        public let crashPoint: Int?
        /// 0: the first run (the ledger is new); 1…: runs after a crash.
        public let index: Int
        /// The last run, which is not crashed (in the reference run, epoch 0).
        public let isFinal: Bool
        /// Only in `check`: the final run finished, the ledger was closed cleanly, lost
        /// power and was reopened. The workload's job must be complete now.
        public let isEnd: Bool
        /// The simulated disk (for `processIsDead`, operation counts, files).
        public let storage: SimulatedStorage
        let history: CrashHistory

        /// Whether the armed crash fired: every ledger call now fails; the epoch is over.
        public var processIsDead: Bool { storage.processIsDead }

        /// Adds a line to the run's history, which a failure prints.
        public func note(_ text: String) { history.append(text) }

        public var description: String {
            "seed=\(seed) crashPoint=\(crashPoint.map(String.init) ?? "reference") epoch=\(index)\(isEnd ? " (end)" : "")"
        }
    }

    /// What a run of ``run(world:workload:check:)`` did, summed over its seeds.
    public struct Report: Sendable, CustomStringConvertible {
        /// The seeds that ran.
        public var seeds: [UInt64] = []
        /// Crash points run (each reference run's operation count + 1, per seed, up to a failure).
        public var crashPoints = 0
        /// Crash points whose first run died at its point (in open or in the workload).
        public var crashedAtPoint = 0
        /// Crash points whose first run finished before reaching its point (concurrent
        /// workloads batch differently from run to run); not a failure.
        public var finishedBeforePoint = 0
        /// Ledger opens at the start of an epoch, in crash-point runs.
        public var opens = 0
        /// Opens that the armed crash killed.
        public var diedInOpen = 0
        /// Ends of an epoch by power loss, and by a process kill.
        public var powerLosses = 0
        public var processKills = 0
        /// The reference runs' operation counts, summed.
        public var referenceOperations = 0
        /// Files the reference runs' first epoch created (segments, snapshots, side files).
        public var referenceFilesCreated = 0
        /// The failures, at most one per seed.
        public var failures: [LedgerCrashFailure] = []

        public init() {}

        public var passed: Bool { failures.isEmpty }

        public static func += (lhs: inout Report, rhs: Report) {
            lhs.seeds += rhs.seeds
            lhs.crashPoints += rhs.crashPoints
            lhs.crashedAtPoint += rhs.crashedAtPoint
            lhs.finishedBeforePoint += rhs.finishedBeforePoint
            lhs.opens += rhs.opens
            lhs.diedInOpen += rhs.diedInOpen
            lhs.powerLosses += rhs.powerLosses
            lhs.processKills += rhs.processKills
            lhs.referenceOperations += rhs.referenceOperations
            lhs.referenceFilesCreated += rhs.referenceFilesCreated
            lhs.failures += rhs.failures
        }

        public var description: String {
            "\(seeds.count) seeds, \(crashPoints) crash points (\(crashedAtPoint) crashed at their point, "
                + "\(finishedBeforePoint) finished before it), \(opens) opens (\(diedInOpen) died in open), "
                + "\(powerLosses) power losses, \(processKills) process kills; "
                + (failures.isEmpty ? "passed" : "\(failures.count) failed: \(failures.map { "ONCELEDGER_SEED=\($0.seed)" })")
        }
    }

    /// Runs every seed (concurrently), each at every crash point; returns what happened.
    /// Failures are also printed, each with `ONCELEDGER_SEED=<seed>`.
    ///
    /// - Parameters:
    ///   - world: Makes the world outside the ledger for one crash point: fakes of your
    ///     downstreams (a mailer that records what it sent), which survive the simulated
    ///     crashes of that crash point as a real mail server survives your process.
    ///   - workload: Your effect code, run at each epoch on the reopened ledger; it chooses
    ///     its `whenPending` policy (`.retry` for downstreams that de-duplicate by token).
    ///   - check: Your invariant, after every open (before the workload) and at the end
    ///     (`epoch.isEnd`); throw ``CrashInvariantViolation`` to fail.
    public func run<World>(
        world: @escaping @Sendable () -> World,
        workload: @escaping @Sendable (Ledger, World, Epoch) async throws -> Void,
        check: @escaping @Sendable (Ledger, World, Epoch) async throws -> Void = { _, _, _ in }
    ) async -> Report {
        let runner = self
        let seeds = CrashSeeds.pinned.map { [$0] } ?? self.seeds
        var report = await withTaskGroup(of: Report.self) { group in
            for seed in seeds {
                group.addTask {
                    await runner.runSeed(seed, CrashCase(makeWorld: world, workload: workload, check: check))
                }
            }
            var report = Report()
            for await result in group { report += result }
            return report
        }
        report.seeds = seeds
        report.failures.sort { seeds.firstIndex(of: $0.seed) ?? 0 < seeds.firstIndex(of: $1.seed) ?? 0 }
        for failure in report.failures { print("LedgerCrashRunner: \(failure)") }
        return report
    }

    /// The reference run, then every crash point; stops at the first failure.
    func runSeed<World>(_ seed: UInt64, _ crashCase: CrashCase<World>) async -> Report {
        var report = Report()
        var referenceRun = CrashRun(runner: self, seed: seed, point: nil, referenceOperations: 0)
        let reference = await referenceRun.run(crashCase)
        report.referenceOperations = reference.operations
        report.referenceFilesCreated = reference.filesCreated
        if let failure = reference.failure {
            report.failures.append(failure)
            return report
        }
        for point in 0...reference.operations {
            var crashRun = CrashRun(runner: self, seed: seed, point: point, referenceOperations: reference.operations)
            let outcome = await crashRun.run(crashCase)
            report.crashPoints += 1
            report.crashedAtPoint += outcome.crashedAtPoint ? 1 : 0
            report.finishedBeforePoint += outcome.finishedBeforePoint ? 1 : 0
            report.opens += outcome.opens
            report.diedInOpen += outcome.diedInOpen
            report.powerLosses += outcome.powerLosses
            report.processKills += outcome.processKills
            if let failure = outcome.failure {
                report.failures.append(failure)
                break
            }
        }
        return report
    }
}

/// Thrown by a crash test's `check` (or workload) when the invariant does not hold.
public struct CrashInvariantViolation: Error, Sendable, CustomStringConvertible {
    /// What is wrong, one line each.
    public var problems: [String]

    public init(_ problem: String) { problems = [problem] }

    public init(problems: [String]) { self.problems = problems }

    public var description: String { problems.joined(separator: "; ") }
}

/// One failure of a crash test: where (seed, crash point, epoch), what, and the run's
/// history. `description` ends with `ONCELEDGER_SEED=<seed>` to rerun that seed alone.
public struct LedgerCrashFailure: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// `check` threw, or the workload threw a `CrashInvariantViolation`.
        case invariant
        /// The workload threw while the simulated process was alive.
        case workloadFailed = "workload-failed"
        /// The ledger refused to open after an ordinary crash (or a clean close and a power loss).
        case openFailed = "open-failed"
        /// A clean close after the final run failed.
        case closeFailed = "close-failed"
    }

    public var kind: Kind
    /// What went wrong: a violation's problems, or the error's description.
    public var problems: [String]
    /// The error thrown.
    public var error: any Error
    public var seed: UInt64
    /// nil: the reference run.
    public var crashPoint: Int?
    public var epoch: Int
    /// The run so far: opens that died, kills, power losses (with what the crash did to
    /// pending writes), and the workload's own notes.
    public var history: [String]

    /// Where it happened and how to rerun it (no problems).
    public var context: String {
        "seed=\(seed) crashPoint=\(crashPoint.map(String.init) ?? "reference") epoch=\(epoch) "
            + "history: \(history.suffix(12).joined(separator: ", ")) — reproduce with ONCELEDGER_SEED=\(seed)"
    }

    public var description: String {
        "\(kind.rawValue): \(problems.prefix(6).joined(separator: "; ")) — \(context)"
    }
}

/// The history of one crash-point run; `Epoch.note` appends from the workload.
final class CrashHistory: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var snapshot: [String] { lines.withLock { $0 } }
}

struct CrashCase<World>: Sendable {
    let makeWorld: @Sendable () -> World
    let workload: @Sendable (Ledger, World, LedgerCrashRunner.Epoch) async throws -> Void
    let check: @Sendable (Ledger, World, LedgerCrashRunner.Epoch) async throws -> Void
}

/// One run of a seed: the reference run (`point` nil: epoch 0 without a crash, then the
/// end) or a crash point (epoch 0 crashed at `point`, the crashed reruns, the final run,
/// the end).
struct CrashRun {
    struct Outcome {
        var operations = 0
        var filesCreated = 0
        var opens = 0
        var diedInOpen = 0
        var powerLosses = 0
        var processKills = 0
        var crashedAtPoint = false
        var finishedBeforePoint = false
        var failure: LedgerCrashFailure?
    }

    let runner: LedgerCrashRunner
    let seed: UInt64
    let point: Int?
    let referenceOperations: Int
    let storage: SimulatedStorage
    let configuration: LogConfiguration
    let history = CrashHistory()
    var random: SeededRandom
    var outcome = Outcome()

    init(runner: LedgerCrashRunner, seed: UInt64, point: Int?, referenceOperations: Int) {
        self.runner = runner
        self.seed = seed
        self.point = point
        self.referenceOperations = referenceOperations
        let salt = UInt64(point.map { $0 + 1 } ?? 0)
        storage = SimulatedStorage(seed: SeededRandom.derive(seed, salt), options: runner.storageOptions)
        random = SeededRandom(seed: SeededRandom.derive(seed, 0x5eed_0000 + salt))
        var configuration = runner.configuration
        if configuration.newLedgerIdentity == nil {
            // A ledger id from the seed: the same tokens on every run of the seed.
            var idRandom = SeededRandom(seed: SeededRandom.derive(seed, 0x1ed6_e41d))
            if let id = LedgerID(bytes: idRandom.bytes(FormatLimits.ledgerIDBytes)) {
                configuration.newLedgerIdentity = LedgerIdentity(ledgerID: id, ledgerScopedTokens: true)
            }
        }
        self.configuration = configuration
    }

    mutating func fail(_ kind: LedgerCrashFailure.Kind, _ error: any Error, epoch: Int) {
        let problems = (error as? CrashInvariantViolation)?.problems ?? ["\(error)"]
        outcome.failure = LedgerCrashFailure(kind: kind, problems: problems, error: error, seed: seed,
                                             crashPoint: point, epoch: epoch, history: history.snapshot)
    }

    func open() throws -> Ledger {
        try Ledger.open(directory: runner.directory, configuration: configuration, storage: storage, clock: runner.clock)
    }

    mutating func run<World>(_ crashCase: CrashCase<World>) async -> Outcome {
        let world = crashCase.makeWorld()
        let lastEpoch = point == nil ? 0 : max(0, runner.crashedReruns) + 1
        for index in 0...lastEpoch {
            let isFinal = index == lastEpoch
            let epoch = LedgerCrashRunner.Epoch(seed: seed, crashPoint: point, index: index, isFinal: isFinal,
                                                isEnd: false, storage: storage, history: history)
            if index == 0, let point {
                storage.crash(afterOperations: point)
            } else if index > 0 && !isFinal {
                storage.crash(afterOperations: random.int(in: 0...max(8, referenceOperations * 2 / 3)))
            }
            let ledger: Ledger
            do {
                ledger = try open()
            } catch {
                if !isFinal && storage.processIsDead {
                    history.append("e\(index): died in open")
                    outcome.diedInOpen += 1
                    if index == 0 { outcome.crashedAtPoint = true }
                    endEpoch()
                    continue
                }
                fail(.openFailed, error, epoch: index)
                return outcome
            }
            if point != nil { outcome.opens += 1 }
            do {
                try await crashCase.check(ledger, world, epoch)
            } catch {
                try? ledger.close()
                fail(.invariant, error, epoch: index)
                return outcome
            }
            do {
                try await crashCase.workload(ledger, world, epoch)
            } catch let violation as CrashInvariantViolation {
                try? ledger.close()
                fail(.invariant, violation, epoch: index)
                return outcome
            } catch {
                if !storage.processIsDead {
                    try? ledger.close()
                    fail(.workloadFailed, error, epoch: index)
                    return outcome
                }
            }
            history.append(storage.processIsDead ? "e\(index): crashed" : "e\(index): ran")
            if index == 0 {
                outcome.operations = storage.operationCount
                if point == nil {
                    outcome.filesCreated = storage.operationCount(.create)
                } else if storage.processIsDead {
                    outcome.crashedAtPoint = true
                } else if let point, point < referenceOperations {
                    outcome.finishedBeforePoint = true
                }
            }
            if isFinal {
                await finish(ledger, crashCase, world, epoch: index)
                return outcome
            }
            try? ledger.close()
            endEpoch()
        }
        return outcome
    }

    /// The process dies: a power loss, or (one time in four) a kill that keeps the page cache.
    mutating func endEpoch() {
        if random.chance(1, in: 4) {
            storage.restartProcess()
            outcome.processKills += 1
            history.append("kill")
        } else {
            let summary = storage.crash()
            outcome.powerLosses += 1
            history.append("power loss [kept \(summary.writesKept) dropped \(summary.writesDropped) "
                + "torn \(summary.writesTorn) garbled \(summary.writesGarbled)]")
        }
    }

    /// After the final run: a clean close, a power loss, a reopen and the end check.
    mutating func finish<World>(_ ledger: Ledger, _ crashCase: CrashCase<World>, _ world: World, epoch index: Int) async {
        do {
            try ledger.close()
        } catch {
            fail(.closeFailed, error, epoch: index)
            return
        }
        storage.crash()
        history.append("clean close, power loss")
        let reopened: Ledger
        do {
            reopened = try open()
        } catch {
            fail(.openFailed, error, epoch: index)
            return
        }
        defer { try? reopened.close() }
        let end = LedgerCrashRunner.Epoch(seed: seed, crashPoint: point, index: index, isFinal: true, isEnd: true,
                                          storage: storage, history: history)
        do {
            try await crashCase.check(reopened, world, end)
        } catch {
            fail(.invariant, error, epoch: index)
        }
    }
}
