// Proves the log never loses an acknowledged record and never refuses to open after an
// ordinary crash (`ARCHITECTURE.md` §3, §5): seeded random workloads on `SimulatedStorage` (unsynced
// writes kept, dropped, torn or garbled; unsynced directory operations reverted) are
// crashed at every mutating I/O step of a reference run, recovered, continued and crashed
// again, and checked against a model after every recovery; the threaded `LogEngine` is
// crashed under concurrent appenders; injected EIO/ENOSPC poisons the engine and a reopen
// recovers everything acknowledged, also when a failed fsync loses its pages as Linux does (a
// reopen in the same boot compares them with the device, a kill during that included). Seeds are random per run and printed in every failure:
// rerun one with `ONCELEDGER_SEED=<n>`; `ONCELEDGER_CRASH_ITERATIONS` sets the seed count.
import Glibc
import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization
import Testing

// MARK: - Environment

private enum CrashTestEnvironment {
    /// Seeds per test (`ONCELEDGER_CRASH_ITERATIONS`, default 20; `ONCELEDGER_SEED` pins one).
    static let iterations = CrashSeeds.iterations(default: 20)

    static let directory = "/ledger"
}

// MARK: - Model

/// What the log must contain: `history` is every opaque record attempted, in
/// attempt order, that may still exist; the first `required` of them must exist
/// (acknowledged by a returned commit, or shown by an earlier recovery).
private struct CrashModel {
    var history: [[UInt8]] = []
    var required = 0

    /// Checks a recovered sequence of record bodies; returns a description of the
    /// first violation, or nil.
    func violation(_ recovered: [[UInt8]]) -> String? {
        if recovered.count < required {
            let lost = history[recovered.count]
            return "lost an acknowledged record: recovered \(recovered.count) records but \(required) were acknowledged; "
                + "the first missing one is \(CrashModel.describe(lost))"
        }
        if recovered.count > history.count {
            return "recovered \(recovered.count) records but only \(history.count) were ever written; "
                + "the extra one is \(CrashModel.describe(recovered[history.count]))"
        }
        for index in recovered.indices where recovered[index] != history[index] {
            return "record #\(index) is \(CrashModel.describe(recovered[index])) but \(CrashModel.describe(history[index])) "
                + "was written there (a stale, reordered or damaged record)"
        }
        return nil
    }

    /// After a successful recovery, what it showed is the new truth: it must survive.
    mutating func accept(_ recovered: [[UInt8]]) {
        history = recovered
        required = recovered.count
    }

    /// Bodies start with (epoch, step, index) as three u32s; see `CrashWorkload.body`.
    static func describe(_ body: [UInt8]) -> String {
        guard body.count >= 12 else { return "<\(body.count)-byte body>" }
        let epoch = ByteReader.getInteger(body, at: 0, as: UInt32.self)
        let step = ByteReader.getInteger(body, at: 4, as: UInt32.self)
        let index = ByteReader.getInteger(body, at: 8, as: UInt32.self)
        return "<epoch \(epoch) step \(step) record \(index), \(body.count) bytes>"
    }
}

// MARK: - Workload

/// A seeded random workload: per epoch, a list of commit batches and compactions.
private struct CrashWorkload: CustomStringConvertible {
    enum Step {
        case commit([[UInt8]])
        case compact
    }

    let seed: UInt64
    let configuration: LogConfiguration
    let batchRecordsMax: Int
    let stepsPerEpoch: ClosedRange<Int>
    let epochs: Int
    let options: SimulatedStorage.Options

    init(seed: UInt64) {
        var random = SeededRandom(seed: SeededRandom.derive(seed, 0x706c_616e))
        // Small segments so rollovers are frequent; 12288 with a 1 KiB record limit
        // puts many records in a segment. (Rollover zero-fills in unoptimized builds
        // byte by byte, so larger segments cost test time without adding cases.)
        // The larger two start at 4096 and double (rollovers of growing sizes, and
        // compactions that roll to a new, smaller segment: `Spec/FORMAT.md` §3.4, §8).
        var configuration: LogConfiguration
        switch random.int(below: 4) {
        case 0, 1: configuration = LogConfiguration(segmentBytes: 4096)
        case 2: configuration = LogConfiguration(segmentBytes: 8192)
        default: configuration = LogConfiguration(segmentBytes: 12288, recordBodyBytesMax: 1024)
        }
        configuration.initialSegmentBytes = 4096
        self.configuration = configuration
        batchRecordsMax = random.element(of: [1, 2, 4, 8])
        stepsPerEpoch = 6...12
        epochs = 3
        var options = SimulatedStorage.Options()
        options.directoryOperationsMayPersist = random.chance(1, in: 2)
        self.options = options
        self.seed = seed
    }

    var description: String {
        "segmentBytes=\(configuration.initialSegmentBytes)...\(configuration.segmentBytes) recordBodyBytesMax=\(configuration.recordBodyBytesMax) "
            + "batchRecordsMax=\(batchRecordsMax) directoryOperationsMayPersist=\(options.directoryOperationsMayPersist)"
    }

    /// The steps of one epoch: a function of the seed and the epoch only, so every
    /// crash point replays the same epoch-0 workload as the reference run.
    func steps(epoch: Int) -> [Step] {
        var random = SeededRandom(seed: SeededRandom.derive(seed, 0x1000 + UInt64(epoch)))
        var steps: [Step] = []
        if epoch > 0 && random.chance(1, in: 4) { steps.append(.compact) }
        // Epoch 0 is crashed at every operation; later epochs are shorter.
        let count = epoch == 0 ? random.int(in: stepsPerEpoch) : random.int(in: 2...(stepsPerEpoch.lowerBound))
        for stepIndex in 0..<count {
            if random.chance(1, in: 8) {
                steps.append(.compact)
                continue
            }
            let records = random.int(in: 1...batchRecordsMax)
            steps.append(.commit((0..<records).map { index in
                body(epoch: epoch, step: stepIndex, index: index, random: &random)
            }))
        }
        return steps
    }

    /// A unique body: (epoch, step, index) then seeded filler, of a random size
    /// that is often near the record limit.
    func body(epoch: Int, step: Int, index: Int, random: inout SeededRandom) -> [UInt8] {
        let limit = Int(configuration.recordBodyBytesMax)
        let size: Int
        switch random.int(below: 20) {
        case 0..<9: size = random.int(in: 12...64)
        case 9..<14: size = random.int(in: 65...min(limit, 600))
        case 14..<18: size = random.int(in: max(12, limit - 64)...limit)
        default: size = limit
        }
        var writer = ByteWriter(capacity: size)
        writer.writeInteger(UInt32(epoch))
        writer.writeInteger(UInt32(step))
        writer.writeInteger(UInt32(index))
        writer.writeBytes(random.bytes(size - 12))
        return writer.bytes
    }
}

// MARK: - Recovery with checks

private enum RecoverOutcome {
    case opened(LogWriter, any StorageLock)
    /// The armed crash fired inside recovery: not a failure, the process just died again.
    case processDied
    /// A check failed (already recorded as an issue).
    case failed
}

/// Runs `LogWriter.recover`, collects the opaque records (snapshot items, then
/// replayed records), checks the report and the records against `model`, and on
/// success makes the recovered records the model's new truth.
private func recoverAndCheck(
    storage: SimulatedStorage, configuration: LogConfiguration, model: inout CrashModel, context: String
) -> RecoverOutcome {
    var recovered: [[UInt8]] = []
    var covered: UInt64 = 0
    var lastSeen: UInt64?
    var problems: [String] = []
    let opened: (LogWriter, any StorageLock, RecoveryReport)
    do {
        opened = try LogWriter.recover(
            directory: CrashTestEnvironment.directory, storage: storage, configuration: configuration,
            onSnapshot: { snapshot in
                covered = snapshot.coveredSequence
                recovered = []
                for item in snapshot.items {
                    if item.kind == .opaque {
                        recovered.append(item.body)
                    } else {
                        problems.append("snapshot item of unexpected kind \(item.kind)")
                    }
                }
            },
            onRecord: { record in
                let expected = (lastSeen ?? covered) + 1
                if record.header.sequence != expected {
                    problems.append("replayed sequence \(record.header.sequence), expected \(expected)")
                }
                lastSeen = record.header.sequence
                switch record.header.kind {
                case .opaque: recovered.append(record.body)
                case .snapshotMarker, .checkpoint, .seal: break
                default: problems.append("replayed a record of unexpected kind \(record.header.kind)")
                }
            })
    } catch {
        if storage.processIsDead { return .processDied }
        Issue.record("recovery refused to open after an ordinary crash: \(error) — \(context)")
        return .failed
    }
    let (writer, lock, report) = opened
    switch report.row.action {
    case .open, .createNew, .quarantineTornTail, .completeRollover: break
    case .refuse: problems.append("recovery chose refusing row \(report.row) but returned a writer")
    }
    if writer.lastSequence != report.lastSequence {
        problems.append("writer continues after \(writer.lastSequence) but the scan ended at \(report.lastSequence)")
    }
    if report.lastSequence != (lastSeen ?? covered) {
        problems.append("the report's last sequence \(report.lastSequence) is not the last replayed \(lastSeen ?? covered)")
    }
    if report.row.action == .quarantineTornTail {
        if let torn = report.tornTail {
            if torn.expectedSequence != report.lastSequence + 1 {
                problems.append("torn tail expects sequence \(torn.expectedSequence) after \(report.lastSequence)")
            }
            let side = LedgerFileNames.torn(segment: torn.segment, offset: torn.offset).replacingOccurrences(of: ".bin", with: "")
            if !storage.listFiles().contains(where: { $0.contains(side) }) {
                problems.append("no quarantine side file \(side)* after a torn tail")
            }
        } else {
            problems.append("row \(report.row) without a torn tail")
        }
    }
    if let violation = model.violation(recovered) { problems.append(violation) }
    if !problems.isEmpty {
        Issue.record("\(problems.joined(separator: "; ")) [row \(report.row)] — \(context)")
        lock.unlock()
        return .failed
    }
    model.accept(recovered)
    return .opened(writer, lock)
}

private enum StepsOutcome {
    case completed
    /// The armed crash killed the process (the writer is poisoned).
    case died
    /// A check failed (already recorded as an issue).
    case failed
}

/// Runs `steps` on `writer` until one throws.
private func runSteps(
    _ steps: [CrashWorkload.Step], writer: LogWriter, storage: SimulatedStorage, model: inout CrashModel,
    context: String
) -> StepsOutcome {
    for (index, step) in steps.enumerated() {
        switch step {
        case .commit(let bodies):
            let records = bodies.map { LogRecord(kind: .opaque, body: $0) }
            do {
                try writer.validate(records)
            } catch {
                Issue.record("the workload made an invalid batch: \(error) — \(context)")
                return .failed
            }
            let expectedFirst = writer.lastSequence + 1
            model.history.append(contentsOf: bodies)
            do {
                let first = try writer.commit(records)
                // A rollover before the first record puts the old segment's seal first.
                let expectedFirst = expectedFirst + (writer.sealsInLastCommit.first == 0 ? 1 : 0)
                if first != expectedFirst {
                    Issue.record("commit returned sequence \(first), expected \(expectedFirst) — \(context) step \(index)")
                    return .failed
                }
                model.required = model.history.count
            } catch {
                return expectDeath(error, writer: writer, storage: storage, context: "\(context) step \(index) commit")
            }
        case .compact:
            let items = model.history.map { SnapshotFile.Item(kind: .opaque, body: $0) }
            do {
                let result = try writer.compact(items: items, timeMilliseconds: 1)
                // (The marker's commit may roll over: then the old segment's seal comes first.)
                let sealed: UInt64 = writer.sealsInLastCommit.isEmpty ? 0 : 1
                if result.coveredSequence + 1 + sealed != writer.lastSequence {
                    Issue.record("compaction covered \(result.coveredSequence) but the marker is not the last record — \(context)")
                    return .failed
                }
            } catch {
                return expectDeath(error, writer: writer, storage: storage, context: "\(context) step \(index) compact")
            }
        }
    }
    return .completed
}

/// An error from the workload is fine only if the armed crash killed the process;
/// the writer must then be poisoned.
private func expectDeath(_ error: Error, writer: LogWriter, storage: SimulatedStorage, context: String) -> StepsOutcome {
    guard storage.processIsDead else {
        Issue.record("unexpected error without a crash: \(error) — \(context)")
        return .failed
    }
    guard writer.poisoned != nil else {
        Issue.record("the writer is not poisoned after a failed write or sync: \(error) — \(context)")
        return .failed
    }
    return .died
}

/// A value behind a lock, shareable between tasks.
private final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}

// MARK: - Tests

@Suite struct CrashTests {
    /// Crash at every mutating operation of a reference run of epoch 0, then two
    /// more epochs of recover + workload + crash at a random point each (power loss,
    /// or sometimes a process kill that keeps the page cache), then a final
    /// recovery, a clean close, a power loss and a last recovery that must be clean.
    @Test func crashAtEveryOperationLosesNothing() async throws {
        // Seeds are independent; run them on all cores.
        let totals = await withTaskGroup(of: (points: Int, torn: Int).self) { group in
            for seed in CrashSeeds.seeds(CrashTestEnvironment.iterations) {
                group.addTask { CrashTests().runSeed(seed) }
            }
            var totals = (points: 0, torn: 0)
            for await result in group {
                totals.points += result.points
                totals.torn += result.torn
            }
            return totals
        }
        print("crashAtEveryOperationLosesNothing: \(totals.points) crash points, \(totals.torn) torn tails quarantined")
    }

    /// All crash points of one seed; stops at the first failure.
    private func runSeed(_ seed: UInt64) -> (points: Int, torn: Int) {
        let workload = CrashWorkload(seed: seed)
        let context = "seed=\(seed) (\(workload))"
        // Reference run: count the operations of recovery (creation) plus epoch 0.
        let reference = SimulatedStorage(seed: seed, options: workload.options)
        var referenceModel = CrashModel()
        guard case .opened(let writer, let lock) = recoverAndCheck(
            storage: reference, configuration: workload.configuration, model: &referenceModel,
            context: "\(context) reference run")
        else { return (0, 0) }
        guard runSteps(workload.steps(epoch: 0), writer: writer, storage: reference, model: &referenceModel,
                       context: "\(context) reference run") == .completed
        else {
            Issue.record("the reference run did not complete — \(context)")
            return (0, 0)
        }
        lock.unlock()
        let total = reference.operationCount
        var tornTails = 0
        for point in 0...total {
            guard let torn = runCrashPoint(workload: workload, point: point, operations: total) else {
                return (point + 1, tornTails)
            }
            tornTails += torn
        }
        return (total + 1, tornTails)
    }

    /// One crash point: returns the number of torn tails seen, or nil after a failure.
    private func runCrashPoint(workload: CrashWorkload, point: Int, operations: Int) -> Int? {
        let seed = workload.seed
        let storage = SimulatedStorage(seed: SeededRandom.derive(seed, UInt64(point)), options: workload.options)
        var random = SeededRandom(seed: SeededRandom.derive(seed, 0x5eed_0000 + UInt64(point)))
        var model = CrashModel()
        var tornTails = 0
        var history: [String] = []
        func context(_ epoch: Int) -> String {
            "seed=\(seed) crashPoint=\(point) epoch=\(epoch) (\(workload)) history: \(history.joined(separator: ", "))"
        }
        for epoch in 0..<workload.epochs {
            let budget = epoch == 0 ? point : random.int(in: 0...(operations + operations / 4))
            storage.crash(afterOperations: budget)
            switch recoverAndCheck(storage: storage, configuration: workload.configuration, model: &model,
                                   context: context(epoch)) {
            case .failed:
                return nil
            case .processDied:
                history.append("e\(epoch): died in recovery")
            case .opened(let writer, let lock):
                let outcome = runSteps(workload.steps(epoch: epoch), writer: writer, storage: storage, model: &model,
                                       context: context(epoch))
                guard outcome != .failed else { return nil }
                history.append("e\(epoch): \(model.history.count) records, \(model.required) acked")
                // Sometimes a clean close (its checkpoint commit may meet the armed crash).
                if outcome == .completed && epoch > 0 && random.chance(1, in: 3) {
                    writer.close(timeMilliseconds: 4)
                    lock.unlock()
                    history.append("closed")
                }
            }
            // The process dies without closing anything.
            if epoch > 0 && random.chance(1, in: 5) {
                storage.restartProcess()
                history.append("kill")
            } else {
                let summary = storage.crash()
                history.append("power loss [\(summary)]")
            }
        }
        // Final recovery, clean close, power loss, and a reopen that must be clean.
        let finalContext = context(workload.epochs)
        guard case .opened(let writer, let lock) = recoverAndCheck(
            storage: storage, configuration: workload.configuration, model: &model, context: finalContext)
        else { return nil }
        writer.close(timeMilliseconds: 2)
        lock.unlock()
        storage.crash()
        var recovered: [[UInt8]] = []
        let report: RecoveryReport
        do {
            let reopened = try LogWriter.recover(
                directory: CrashTestEnvironment.directory, storage: storage, configuration: workload.configuration,
                onSnapshot: { snapshot in recovered = snapshot.items.map(\.body) },
                onRecord: { record in if record.header.kind == .opaque { recovered.append(record.body) } })
            report = reopened.2
            reopened.0.close(timeMilliseconds: 3)
            reopened.1.unlock()
        } catch {
            Issue.record("reopen after a clean close and a power loss refused: \(error) — \(finalContext)")
            return nil
        }
        if !report.row.label.hasPrefix("R11") {
            Issue.record("after a clean close the log is not clean: row \(report.row) — \(finalContext)")
            return nil
        }
        if recovered != model.history {
            Issue.record("after a clean close: \(model.violation(recovered) ?? "extra records") — \(finalContext)")
            return nil
        }
        tornTails += storage.listFiles().filter { $0.contains("/torn-") }.count
        return tornTails
    }

    /// Many tasks append concurrently through the threaded `LogEngine`; the storage
    /// crashes at a random operation; every append that returned must be present
    /// after recovery, at the sequence number it returned, with its bytes.
    @Test func concurrentAppendersSurviveACrash() async throws {
        var crashes = 0
        for seed in CrashSeeds.seeds(CrashTestEnvironment.iterations) {
            do {
                if try await runConcurrentSeed(seed) { crashes += 1 }
            } catch {
                Issue.record("unexpected error: \(error) — seed=\(seed)")
                return
            }
        }
        print("concurrentAppendersSurviveACrash: \(crashes) runs crashed mid-workload")
    }

    /// Returns whether the armed crash fired before the workload finished.
    private func runConcurrentSeed(_ seed: UInt64) async throws -> Bool {
        var random = SeededRandom(seed: seed)
        let storage = SimulatedStorage(seed: SeededRandom.derive(seed, 1))
        let configuration = LogConfiguration(segmentBytes: random.element(of: [4096, 8192, 16384]))
        let taskCount = random.int(in: 8...48)
        let perTask = random.int(in: 1...8)
        let crashAt = random.int(in: 0...300)
        let context = "seed=\(seed) segmentBytes=\(configuration.segmentBytes) tasks=\(taskCount)x\(perTask) crashAt=\(crashAt)"
        let limit = Int(configuration.recordBodyBytesMax)
        var bodies: [[[UInt8]]] = []
        for task in 0..<taskCount {
            bodies.append((0..<perTask).map { index in
                let size = random.chance(1, in: 6) ? random.int(in: max(8, limit - 64)...limit) : random.int(in: 8...200)
                var writer = ByteWriter(capacity: size)
                writer.writeInteger(UInt32(task))
                writer.writeInteger(UInt32(index))
                writer.writeBytes(random.bytes(size - 8))
                return writer.bytes
            })
        }
        let allBodies = bodies

        storage.crash(afterOperations: crashAt)
        let engine: LogEngine
        do {
            engine = try LogEngine.open(directory: CrashTestEnvironment.directory, storage: storage,
                                        configuration: configuration, clock: { 1 })
        } catch {
            guard storage.processIsDead else {
                Issue.record("open failed without a crash: \(error) — \(context)")
                return false
            }
            storage.crash()
            return try checkConcurrentRecovery(storage: storage, configuration: configuration, bodies: allBodies,
                                               acked: [:], context: context)
        }

        // (task, index) -> returned sequence number.
        let acked = LockedBox<[Int: [UInt64]]>([:])
        let unexpected = LockedBox<[String]>([])
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<taskCount {
                group.addTask {
                    for index in 0..<perTask {
                        do {
                            let sequence = try await engine.append(kind: .opaque, body: allBodies[task][index])
                            acked.withLock { $0[task, default: []].append(sequence) }
                        } catch {
                            let code = (error as? LedgerError)?.code
                            if code != .io && code != .poisoned {
                                unexpected.withLock { $0.append("task \(task) record \(index): \(error)") }
                            }
                            return
                        }
                    }
                }
            }
        }
        let crashed = storage.processIsDead
        for problem in unexpected.withLock({ $0 }) { Issue.record("unexpected append error \(problem) — \(context)") }
        if crashed != (engine.poisonError != nil) {
            Issue.record("crashed=\(crashed) but poisonError=\(String(describing: engine.poisonError)) — \(context)")
        }
        try? engine.close()
        storage.crash()
        _ = try checkConcurrentRecovery(storage: storage, configuration: configuration, bodies: allBodies,
                                        acked: acked.withLock { $0 }, context: context)
        return crashed
    }

    private func checkConcurrentRecovery(
        storage: SimulatedStorage, configuration: LogConfiguration, bodies: [[[UInt8]]], acked: [Int: [UInt64]],
        context: String
    ) throws -> Bool {
        var bySequence: [UInt64: [UInt8]] = [:]
        let engine: LogEngine
        do {
            engine = try LogEngine.open(
                directory: CrashTestEnvironment.directory, storage: storage, configuration: configuration, clock: { 2 },
                onRecord: { record in if record.header.kind == .opaque { bySequence[record.header.sequence] = record.body } })
        } catch {
            Issue.record("recovery refused to open after a crash: \(error) — \(context)")
            return false
        }
        defer { try? engine.close() }
        // Every acknowledged append is at its sequence number with its bytes.
        for (task, sequences) in acked {
            for (index, sequence) in sequences.enumerated() where bySequence[sequence] != bodies[task][index] {
                let found = bySequence[sequence].map { "\($0.count) other bytes" } ?? "missing"
                Issue.record("acknowledged append task \(task) record \(index) at sequence \(sequence) is \(found) — \(context)")
                return false
            }
        }
        // Each task appends in order, one at a time: what survives is a prefix of its
        // records, reaching at least its acknowledged ones and at most one more.
        var found: [Int: [Int]] = [:]
        for sequence in bySequence.keys.sorted() {
            let body = bySequence[sequence]!
            guard body.count >= 8 else {
                Issue.record("recovered a \(body.count)-byte body nobody wrote at sequence \(sequence) — \(context)")
                return false
            }
            let task = Int(ByteReader.getInteger(body, at: 0, as: UInt32.self))
            let index = Int(ByteReader.getInteger(body, at: 4, as: UInt32.self))
            guard task < bodies.count, index < bodies[task].count, bodies[task][index] == body else {
                Issue.record("recovered a body nobody wrote at sequence \(sequence) — \(context)")
                return false
            }
            found[task, default: []].append(index)
        }
        for task in bodies.indices {
            let indices = found[task] ?? []
            let ackedCount = acked[task]?.count ?? 0
            if indices != Array(0..<indices.count) || indices.count < ackedCount || indices.count > ackedCount + 1 {
                Issue.record("task \(task): recovered records \(indices) but \(ackedCount) were acknowledged — \(context)")
                return false
            }
        }
        return true
    }

    struct FaultCase: Sendable, CustomTestStringConvertible {
        var kind: SimulatedStorage.OperationKind
        var errno: Int32
        /// Restart with a power loss (`crash()`) or just close and reopen.
        var powerLoss: Bool
        /// A failed sync leaves its pages readable but clean, as Linux does
        /// (`SimulatedStorage.Options.failedSyncLosesWrites`).
        var losesWrites = false
        var testDescription: String {
            "\(kind) \(errno == EIO ? "EIO" : errno == ENOSPC ? "ENOSPC" : "errno \(errno)")"
                + (losesWrites ? " losing its pages" : "") + " then " + (powerLoss ? "power loss" : "reopen")
        }
    }

    static let faultCases: [FaultCase] = [
        (SimulatedStorage.OperationKind.write, EIO), (.write, ENOSPC), (.fileSync, EIO), (.fileSync, ENOSPC),
        (.directorySync, EIO), (.rename, EIO), (.create, ENOSPC), (.remove, EIO),
    ].flatMap { kind, code in [false, true].map { FaultCase(kind: kind, errno: code, powerLoss: $0) } }
        + [false, true].map { FaultCase(kind: .fileSync, errno: EIO, powerLoss: $0, losesWrites: true) }

    /// An injected EIO/ENOSPC fails the call that hit it with a typed `.io` error
    /// carrying the errno, poisons the engine (every later call throws `.poisoned`),
    /// and a reopen recovers every record acknowledged before the fault.
    @Test(arguments: faultCases) func faultPoisonsAndReopenRecovers(_ fault: FaultCase) async throws {
        for seed in CrashSeeds.seeds(max(2, CrashTestEnvironment.iterations / 4)) {
            do {
                guard try await runFault(fault, seed: seed) else { return }
            } catch {
                Issue.record("unexpected error: \(error) — seed=\(seed) fault=\(fault.testDescription)")
                return
            }
        }
    }

    private func runFault(_ fault: FaultCase, seed: UInt64) async throws -> Bool {
        let context = "seed=\(seed) fault=\(fault.testDescription)"
        var random = SeededRandom(seed: seed)
        var options = SimulatedStorage.Options()
        options.failedSyncLosesWrites = fault.losesWrites
        let storage = SimulatedStorage(seed: SeededRandom.derive(seed, 2), options: options)
        let configuration = LogConfiguration(segmentBytes: 4096)
        let limit = Int(configuration.recordBodyBytesMax)
        var counter = 0
        func nextBody() -> [UInt8] {
            counter += 1
            let size = random.chance(1, in: 4) ? random.int(in: (limit - 100)...limit) : random.int(in: 12...300)
            var writer = ByteWriter(capacity: size)
            writer.writeInteger(UInt32(0))
            writer.writeInteger(UInt32(counter))
            writer.writeInteger(UInt32(0))
            writer.writeBytes(random.bytes(size - 12))
            return writer.bytes
        }
        var engine = try LogEngine.open(directory: CrashTestEnvironment.directory, storage: storage,
                                        configuration: configuration, clock: { 1 })
        var acked: [[UInt8]] = []
        var attempted: [[UInt8]] = []
        for step in 0..<random.int(in: 0...12) {
            let body = nextBody()
            attempted.append(body)
            _ = try await engine.append(kind: .opaque, body: body)
            acked.append(body)
            if step % 5 == 4 {
                let items = acked.map { SnapshotFile.Item(kind: .opaque, body: $0) }
                _ = try await engine.compact { _ in items }
            }
        }
        storage.injectFault(fault.kind, errno: fault.errno, after: random.int(in: 0...3))
        var failure: Error?
        for step in 0..<400 {
            do {
                if step % 7 == 6 {
                    let items = acked.map { SnapshotFile.Item(kind: .opaque, body: $0) }
                    _ = try await engine.compact { _ in items }
                } else {
                    let body = nextBody()
                    attempted.append(body)
                    _ = try await engine.append(kind: .opaque, body: body)
                    acked.append(body)
                }
            } catch {
                failure = error
                break
            }
        }
        guard let failure else {
            Issue.record("the injected fault never fired in 400 steps — \(context)")
            return false
        }
        #expect(storage.faultsFired == 1, "\(context)")
        guard let typed = failure as? LedgerError, typed.code == .io, typed.errno == fault.errno else {
            Issue.record("the failing call threw \(failure), expected .io with errno \(fault.errno) — \(context)")
            return false
        }
        #expect(engine.poisonError?.code == .poisoned, "engine not poisoned — \(context)")
        await #expect(throws: LedgerError.self, "append after poison — \(context)") {
            do {
                _ = try await engine.append(kind: .opaque, body: [1, 2, 3])
            } catch let error as LedgerError where error.code == .poisoned {
                throw error
            }
        }
        await #expect(throws: LedgerError.self, "compact after poison — \(context)") {
            do {
                _ = try await engine.compact { _ in [] }
            } catch let error as LedgerError where error.code == .poisoned {
                throw error
            }
        }
        try engine.close()
        if fault.powerLoss { storage.crash() }

        var recovered: [[UInt8]] = []
        do {
            engine = try LogEngine.open(
                directory: CrashTestEnvironment.directory, storage: storage, configuration: configuration, clock: { 2 },
                onSnapshot: { snapshot in recovered = snapshot.items.map(\.body) },
                onRecord: { record in if record.header.kind == .opaque { recovered.append(record.body) } })
        } catch {
            Issue.record("reopen after the fault refused: \(error) — \(context)")
            return false
        }
        var model = CrashModel(history: attempted, required: acked.count)
        if let violation = model.violation(recovered) {
            Issue.record("\(violation) — \(context)")
            try? engine.close()
            return false
        }
        model.accept(recovered)
        // The reopened engine works, and what it shows stays.
        let body = nextBody()
        model.history.append(body)
        _ = try await engine.append(kind: .opaque, body: body)
        model.required = model.history.count
        try engine.close()
        storage.crash()
        recovered = []
        engine = try LogEngine.open(
            directory: CrashTestEnvironment.directory, storage: storage, configuration: configuration, clock: { 3 },
            onSnapshot: { snapshot in recovered = snapshot.items.map(\.body) },
            onRecord: { record in if record.header.kind == .opaque { recovered.append(record.body) } })
        try engine.close()
        if recovered != model.history {
            Issue.record("after reopen, append, close and power loss: \(model.violation(recovered) ?? "extra records") — \(context)")
            return false
        }
        return true
    }

    /// A compaction whose covered sequence equals the existing snapshot's (its marker
    /// was lost in a crash, then the ledger was reopened and compacted at once) replaces
    /// that snapshot. Crashed at every step, with directory operations that may persist
    /// in order (ext4, XFS), recovery must still find a snapshot and every record.
    @Test func recompactionAfterALostMarkerSurvivesCrashes() throws {
        for seed in CrashSeeds.seeds(max(2, CrashTestEnvironment.iterations / 4)) {
            var options = SimulatedStorage.Options()
            options.directoryOperationsMayPersist = true
            let configuration = LogConfiguration(segmentBytes: 4096)
            var random = SeededRandom(seed: seed)
            let bodies: [[UInt8]] = (0..<12).map { index in
                var writer = ByteWriter()
                writer.writeInteger(UInt32(0))
                writer.writeInteger(UInt32(index))
                writer.writeInteger(UInt32(0))
                writer.writeBytes(random.bytes(random.int(in: 1000...1900)))
                return writer.bytes
            }
            let items = bodies.map { SnapshotFile.Item(kind: .opaque, body: $0) }
            // Reference: how many operations the first compaction takes.
            let reference = SimulatedStorage(seed: seed, options: options)
            var referenceModel = CrashModel()
            guard case .opened(let writer, _) = recoverAndCheck(
                storage: reference, configuration: configuration, model: &referenceModel, context: "seed=\(seed)")
            else { return }
            for body in bodies { try writer.commit([LogRecord(kind: .opaque, body: body)]) }
            let before = reference.operationCount
            let first = try writer.compact(items: items, timeMilliseconds: 1)
            #expect(!first.deletedSegments.isEmpty, "the workload must delete segments — seed=\(seed)")
            let compactionOperations = reference.operationCount - before

            var point = 0
            var finished = false
            while !finished && point < 64 {
                for variant in 0..<4 {
                    let context = "seed=\(seed) point=\(point) variant=\(variant)"
                    let storage = SimulatedStorage(
                        seed: SeededRandom.derive(seed, UInt64(point * 4 + variant)), options: options)
                    var model = CrashModel()
                    guard case .opened(let writer, _) = recoverAndCheck(
                        storage: storage, configuration: configuration, model: &model, context: context)
                    else { return }
                    for body in bodies { try writer.commit([LogRecord(kind: .opaque, body: body)]) }
                    model.history = bodies
                    model.required = bodies.count
                    // Kill the process inside the marker's write: the snapshot is durable, the marker is not.
                    storage.crash(afterOperations: compactionOperations - 2)
                    #expect(throws: LedgerError.self) { _ = try writer.compact(items: items, timeMilliseconds: 1) }
                    storage.crash()
                    guard case .opened(let reopened, _) = recoverAndCheck(
                        storage: storage, configuration: configuration, model: &model, context: context)
                    else { return }
                    // Compact again at once (same covered sequence), crashing at `point`.
                    storage.crash(afterOperations: point)
                    do {
                        _ = try reopened.compact(items: items, timeMilliseconds: 2)
                        finished = true
                    } catch {
                        #expect(storage.processIsDead, "\(error) — \(context)")
                    }
                    storage.crash()
                    guard case .opened = recoverAndCheck(
                        storage: storage, configuration: configuration, model: &model, context: context)
                    else { return }
                }
                point += 1
            }
        }
    }

    /// A ledger whose last commit's sync failed with its pages lost, as Linux loses them
    /// (`Options.failedSyncLosesWrites`): three records acknowledged, then one whose sync
    /// failed (poisoning the engine, which is closed). The failed record nearly fills the
    /// segment, so the next append rolls over and nothing dirties its pages again.
    private struct LostPagesScenario {
        let storage: SimulatedStorage
        let configuration = LogConfiguration(segmentBytes: 8192)
        var model = CrashModel()
        var random: SeededRandom
        var failing: [UInt8] = []

        init(seed: UInt64) async throws {
            var options = SimulatedStorage.Options()
            options.failedSyncLosesWrites = true
            storage = SimulatedStorage(seed: seed, options: options)
            random = SeededRandom(seed: seed)
            let engine = try LogEngine.open(directory: CrashTestEnvironment.directory, storage: storage,
                                            configuration: configuration, clock: { 1 })
            for index in 0..<3 {
                let next = body(index)
                model.history.append(next)
                _ = try await engine.append(kind: .opaque, body: next)
                model.required = model.history.count
            }
            storage.injectFault(.fileSync, errno: EIO, pathContaining: ".seg")
            let used = FormatLimits.segmentHeaderBytes
                + model.history.reduce(0) { $0 + RecordFrame.frameBytes(bodyBytes: $1.count) }
            failing = body(3, bytes: Int(configuration.segmentBytes) - used - FormatLimits.recordHeaderBytes - 64)
            model.history.append(failing)
            let failed = failing
            await #expect(throws: LedgerError.self) { _ = try await engine.append(kind: .opaque, body: failed) }
            try engine.close()
        }

        mutating func body(_ index: Int, bytes: Int? = nil) -> [UInt8] {
            var writer = ByteWriter()
            writer.writeInteger(UInt32(0))
            writer.writeInteger(UInt32(index))
            writer.writeInteger(UInt32(0))
            writer.writeBytes(random.bytes((bytes ?? random.int(in: 20...200)) - 12))
            return writer.bytes
        }

        /// Opens the ledger, collecting its opaque records.
        func open(clock: UInt64, into recovered: inout [[UInt8]]) throws -> LogEngine {
            var collected: [[UInt8]] = []
            let engine = try LogEngine.open(
                directory: CrashTestEnvironment.directory, storage: storage, configuration: configuration,
                clock: { clock },
                onRecord: { record in if record.header.kind == .opaque { collected.append(record.body) } })
            recovered = collected
            return engine
        }

        /// Appends records 4..<7 (acknowledged), closes, loses power, reopens: every record
        /// the reopen showed and every one appended since must be there, in order.
        mutating func appendThenLosePower(_ engine: LogEngine, context: String) async throws {
            for index in 4..<7 {
                let next = body(index)
                model.history.append(next)
                _ = try await engine.append(kind: .opaque, body: next)
                model.required = model.history.count
            }
            try engine.close()
            storage.crash()
            var recovered: [[UInt8]] = []
            let reopened: LogEngine
            do {
                reopened = try open(clock: 3, into: &recovered)
            } catch {
                Issue.record("refused to open after a failed fsync, reopen and power loss: \(error) — \(context)")
                return
            }
            #expect(reopened.recovery.unsyncedTail == nil, "\(context)")
            try reopened.close()
            if let violation = model.violation(recovered) { Issue.record("\(violation) — \(context)") }
            #expect(recovered.map(CrashModel.describe) == model.history.map(CrashModel.describe), "\(context)")
        }
    }

    /// Linux after a failed fsync marks the unwritten pages clean: reads still see
    /// them, no later fsync writes them (`Options.failedSyncLosesWrites`). A reopen in
    /// the same boot must not build on those records as if they were durable: it compares
    /// them with the device's copy and writes the device's bytes back (`UnsyncedTail`,
    /// `Spec/RECOVERY.md` §4.1), so records appended since chain to what the disk holds
    /// and survive a power loss.
    @Test func reopenAfterAFailedSyncWithLostPages() async throws {
        for seed in CrashSeeds.seeds(max(2, CrashTestEnvironment.iterations / 4)) {
            let context = "seed=\(seed)"
            var scenario = try await LostPagesScenario(seed: seed)
            // A read-only scan (`onceledger verify`) finds them and writes nothing.
            let operations = scenario.storage.operationCount
            var seen: [[UInt8]] = []
            let found = try RecoveryScanner.scan(
                storage: scenario.storage, directory: CrashTestEnvironment.directory, unsyncedTail: .report,
                onRecord: { record in if record.header.kind == .opaque { seen.append(record.body) } })
            #expect(found.unsyncedTail?.repaired == false, "a report scan did not find the lost pages — \(context)")
            #expect(scenario.storage.operationCount == operations, "a report scan wrote — \(context)")
            #expect(seen.count == 4, "a report scan reads the page cache as it is — \(context)")
            // Same boot: the page cache still shows the failed record.
            var recovered: [[UInt8]] = []
            let engine = try scenario.open(clock: 2, into: &recovered)
            #expect(engine.recovery.unsyncedTail?.repaired == true, "the reopen did not find the failed record's lost pages — \(context)")
            #expect(engine.recovery.unsyncedTail?.offset == found.unsyncedTail?.offset, "\(context)")
            let readBackTheFailedRecord = recovered.contains(scenario.failing)
            #expect(!readBackTheFailedRecord, "the reopen read back a record the device never got — \(context)")
            if let violation = scenario.model.violation(recovered) { Issue.record("\(violation) — \(context)") }
            scenario.model.accept(recovered)
            try await scenario.appendThenLosePower(engine, context: context)
        }
    }

    /// A process killed at any step of that reopen (the write-back, its sync, the rest of
    /// the open) leaves a ledger the next open in the same boot repairs or finds consistent:
    /// whatever that open shows, and everything appended after it, survives a power loss.
    @Test func aKillDuringTheWriteBackOfLostPagesLosesNothing() async throws {
        for seed in CrashSeeds.seeds(max(2, CrashTestEnvironment.iterations / 4)) {
            // Count the reference reopen's mutating operations, then kill at each of them.
            let reference = try await LostPagesScenario(seed: seed)
            let before = reference.storage.operationCount
            var ignored: [[UInt8]] = []
            try reference.open(clock: 2, into: &ignored).close()
            let operations = reference.storage.operationCount - before
            #expect(operations >= 2, "the reference reopen wrote nothing back — seed=\(seed)")
            for kill in 0..<operations {
                let context = "seed=\(seed) kill=\(kill)"
                var scenario = try await LostPagesScenario(seed: seed)
                scenario.storage.crash(afterOperations: kill)
                var recovered: [[UInt8]] = []
                do {
                    try scenario.open(clock: 2, into: &recovered).close()
                    Issue.record("the open survived its armed kill — \(context)")
                } catch {
                    #expect(scenario.storage.processIsDead, "the open failed without its kill: \(error) — \(context)")
                }
                scenario.storage.restartProcess()
                let engine: LogEngine
                do {
                    engine = try scenario.open(clock: 2, into: &recovered)
                } catch {
                    Issue.record("refused to reopen after a kill during the write-back: \(error) — \(context)")
                    continue
                }
                if let violation = scenario.model.violation(recovered) { Issue.record("\(violation) — \(context)") }
                scenario.model.accept(recovered)
                try await scenario.appendThenLosePower(engine, context: context)
            }
        }
    }

    /// The simulated storage itself follows the model it documents.
    @Test func simulatedStorageFollowsPOSIXDurability() throws {
        let storage = SimulatedStorage(seed: 7)
        try storage.createDirectory("/d")
        let file = try storage.openFile("/d/a", mode: .createExclusive)
        try file.write(Array(repeating: 1, count: 100), at: 0)
        try file.synchronize()
        try storage.synchronizeDirectory("/d")
        try file.write(Array(repeating: 2, count: 100), at: 100)
        let other = try storage.openFile("/d/b", mode: .createExclusive)
        try other.write([9], at: 0)
        try other.synchronize()
        #expect(storage.fileBytes("/d/a")?.count == 200)
        #expect(storage.durableFileBytes("/d/a") == Array(repeating: 1, count: 100))
        // A second locker gets a typed error naming the holder.
        let lock = try storage.lockDirectory("/d")
        #expect {
            _ = try storage.lockDirectory("/d")
        } throws: { error in
            (error as? LedgerError)?.code == .locked && (error as? LedgerError)?.holderPID == getpid()
        }
        storage.crash()
        // Synced bytes survive; the unsynced create is reverted; old handles are dead; the lock is free.
        let after = storage.fileBytes("/d/a") ?? []
        #expect(Array(after.prefix(100)) == Array(repeating: 1, count: 100))
        #expect(after.count >= 100 && after.count <= 200)
        #expect(!storage.exists("/d/b"))
        #expect(throws: LedgerError.self) { try file.read(at: 0, count: 1) }
        lock.unlock()
        let relock = try storage.lockDirectory("/d")
        relock.unlock()
        // An armed crash kills the n+1-th mutating operation and everything after.
        let handle = try storage.openFile("/d/a", mode: .readWrite)
        let start = storage.operationCount
        storage.crash(afterOperations: 1)
        try handle.write([3], at: 0)
        #expect(throws: LedgerError.self) { try handle.synchronizeData() }
        #expect(storage.processIsDead)
        #expect(throws: LedgerError.self) { try storage.listDirectory("/d") }
        #expect(storage.operationCount == start + 1)
        storage.restartProcess()
        #expect(storage.fileBytes("/d/a")?.first == 3, "a process kill keeps the page cache")
        // Fault injection fails one operation of a kind without killing the process.
        let again = try storage.openFile("/d/a", mode: .readWrite)
        storage.injectFault(.fileSync, errno: EIO)
        #expect {
            try again.synchronizeData()
        } throws: { error in
            (error as? LedgerError)?.errno == EIO
        }
        try again.synchronizeData()
        #expect(storage.durableFileBytes("/d/a")?.first == 3)
    }
}
