import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Synchronization

/// `onceledger stress DIR --effects N --concurrency C`: a torture workload for crash
/// testing (`ARCHITECTURE.md` §5, `KillTests`). It makes N `once` calls over K keys from C concurrent
/// callers and prints `ack KEY` on standard output each time a call has returned —
/// the moment its completion is durable. Kill it with SIGKILL at any point; then every
/// acknowledged key must be done (`entries DIR --state done --json` lists it).
///
/// - The keys and the failures are drawn from a seeded generator (`--seed`, printed on
///   standard error), so a run is reproducible up to the interleaving of callers.
/// - `--fail-percent` makes some effects throw: half `EffectDidNotHappen` (the intent
///   is released, the key is absent again), half another error (the key is left
///   pending-unknown). The caller then calls `once` again until it succeeds.
/// - Pending policy: **retry**. A key left pending-unknown by a failed effect or by a
///   previous run that was killed is run again (attempt + 1, same token). That is safe
///   here because the stress effect touches nothing outside the ledger; a real effect
///   would need a downstream that de-duplicates by token, or `.reconcile`.
/// - `--segment-bytes` and `--compact-every` make a short run cross segment rollovers
///   and compactions; `--compact-after-bytes` lets the ledger compact by itself instead
///   (`LogConfiguration.compactAfterLogBytes`).
///
/// Standard output carries only `ack` lines, each written with one `write(2)` (atomic
/// on a pipe, and no stdio buffer for SIGKILL to lose). Progress goes to standard error
/// only when it is a terminal; a start and an end line always go to standard error.
///
/// SIGINT and SIGTERM stop the run cleanly: no new call starts, the calls in flight finish
/// (with their retries, so a failed effect does not stay pending-unknown), the ledger is
/// closed, and the process exits 128 + the signal number (130, 143), as a shell reports a
/// process killed by that signal. SIGKILL is the crash test.
///
/// Exit status: 0 done, 4 the ledger refused to open as corrupt, 8 an operational error
/// (a failed write or sync: the message says which), 16 usage, 130/143 stopped by
/// SIGINT/SIGTERM after a clean close.
struct StressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stress",
        abstract: "A torture workload of `once` calls that prints `ack KEY` per durable completion.",
        discussion: """
            Each `once` call that returns prints one line `ack KEY` to standard output (flushed): \
            its completion is durable. Kill the process at any moment with SIGKILL; every \
            acknowledged key is then done. Keys left pending-unknown (by a killed run or a failed \
            effect) are run again with the retry policy: safe here, because the stress effect has \
            no external side. Progress goes to standard error when it is a terminal.
            SIGINT (Ctrl-C) or SIGTERM stops the run cleanly: no new call starts, the calls in \
            flight finish, the ledger is closed, and every key acknowledged so far is done.
            Exit codes: 0 done, 4 the ledger refused to open as damaged, 8 operational error (a \
            failed write or sync: the message names the call, the file and the errno), 16 usage error, \
            130 stopped by SIGINT, 143 stopped by SIGTERM (128 + the signal number; the ledger \
            was closed cleanly).
            """)

    @Argument(help: "The ledger directory (created if missing; an existing ledger is reused).")
    var dir: String

    @Option(parsing: .unconditional, help: "Number of `once` calls.")
    var effects: Int = 1000

    @Option(parsing: .unconditional, help: "Concurrent callers.")
    var concurrency: Int = 8

    @Option(parsing: .unconditional, help: "Distinct keys the calls are spread over (default: as many as --effects). Fewer keys means more duplicates.")
    var keys: Int?

    @Option(parsing: .unconditional, help: "Seed of the key and failure choices (default: random; printed on standard error).", transform: NumberArgument.unsigned)
    var seed: UInt64?

    @Option(parsing: .unconditional, help: "Segment file size in bytes (a multiple of 8, at least 4096). Small values make a short run cross many rollovers. (default: \(LogConfiguration().segmentBytes))", transform: NumberArgument.unsigned)
    var segmentBytes: UInt64 = LogConfiguration().segmentBytes

    @Option(parsing: .unconditional, help: "Compact (write a snapshot, delete covered segments) after every N acknowledged calls; 0 never.")
    var compactEvery: Int = 0

    @Option(parsing: .unconditional, help: "Let the ledger compact by itself once this many bytes were written since the last snapshot (LogConfiguration.compactAfterLogBytes, at least 65536); 0 never.", transform: NumberArgument.unsigned)
    var compactAfterBytes: UInt64 = 0

    @Option(parsing: .unconditional, help: "Percent of effect runs that throw (half release the intent, half leave the key pending-unknown).")
    var failPercent: Int = 2

    @Option(parsing: .unconditional, help: "Largest receipt in bytes (each receipt has a seeded size up to this).")
    var receiptBytesMax: Int = 64

    @Flag(help: "Create the ledger even if DIR already holds other files (and no ledger). Without it such a directory is refused as not a ledger.")
    var adoptDirectory = false

    func validate() throws {
        guard effects >= 0 else { throw ValidationError("--effects must be a non-negative integer (0, 1, 2, …); it is \(effects)") }
        guard (1...10_000).contains(concurrency) else { throw ValidationError("--concurrency must be in 1...10000") }
        if let keys, keys < 1 { throw ValidationError("--keys must be at least 1") }
        guard compactEvery >= 0 else { throw ValidationError("--compact-every must be a non-negative integer (0 never, N every N acknowledged calls); it is \(compactEvery)") }
        guard (0...50).contains(failPercent) else { throw ValidationError("--fail-percent must be in 0...50") }
        guard (0...FormatLimits.receiptBytesMax).contains(receiptBytesMax) else {
            throw ValidationError("--receipt-bytes-max must be in 0...\(FormatLimits.receiptBytesMax)")
        }
        do {
            try LogConfiguration(segmentBytes: segmentBytes).validate()
        } catch let error as LedgerError {
            throw ValidationError("--segment-bytes: \(error.message)")
        }
        guard compactAfterBytes == 0 || compactAfterBytes >= LogConfiguration.compactAfterLogBytesMin else {
            throw ValidationError("--compact-after-bytes must be 0 (never) or at least \(LogConfiguration.compactAfterLogBytesMin); it is \(compactAfterBytes)")
        }
    }

    func run() async throws {
        // Before the open, so that a signal from now on is a request to stop, not death.
        let stop = StressStop()
        defer { stop.uninstall() }
        let seed = self.seed ?? UInt64.random(in: 0...UInt64.max)
        let keyCount = keys ?? max(1, effects)
        var tuning = LogConfiguration(segmentBytes: segmentBytes)
        tuning.adoptNonEmptyDirectory = adoptDirectory
        if compactAfterBytes > 0 { tuning.compactAfterLogBytes = compactAfterBytes }
        let configuration = tuning
        let directory = dir
        let ledger: Ledger
        do {
            ledger = try await BlockingThread.run(name: "stress-open") {
                try Ledger.open(directory: directory, configuration: configuration)
            }
        } catch let error as LedgerError {
            UnbufferedOutput.error("onceledger stress: error: cannot open \(directory): \(error)")
            throw ExitCode(error.isCorruption ? ExitCodes.problemsLeft : ExitCodes.operational)
        } catch {
            UnbufferedOutput.error("onceledger stress: error: cannot open \(directory): \(error)")
            throw ExitCode(ExitCodes.operational)
        }
        let pendingAtOpen = try await ledger.pendingEntries().count
        UnbufferedOutput.error(
            "stress: \(effects) calls over \(keyCount) keys, \(concurrency) concurrent callers, seed \(seed), segment bytes \(segmentBytes), compact every \(compactEvery == 0 ? "never" : "\(compactEvery)"), fail \(failPercent)%; pending policy: retry"
                + (pendingAtOpen > 0 ? "; \(pendingAtOpen) keys pending-unknown from an earlier run will be retried" : ""))

        let workload = StressWorkload(
            ledger: ledger, effects: effects, keyCount: keyCount, seed: seed, compactEvery: compactEvery,
            failPercent: failPercent, receiptBytesMax: receiptBytesMax, stop: stop)
        let progress = isatty(STDERR_FILENO) == 1 ? Task { await workload.reportProgress() } : nil
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<min(concurrency, max(1, effects)) {
                group.addTask { await workload.worker() }
            }
        }
        progress?.cancel()
        _ = await progress?.value

        let failure = workload.failure
        do {
            try await BlockingThread.run(name: "stress-close") { try ledger.close() }
        } catch {
            if failure == nil {
                UnbufferedOutput.error("onceledger stress: error: closing the ledger failed: \(error)")
                throw ExitCode(ExitCodes.operational)
            }
        }
        let counts = workload.counts.withLock { $0 }
        let automatic = compactAfterBytes > 0
            ? ", \((ledger.store as? FileStore)?.automaticCompactions ?? 0) automatic compactions" : ""
        UnbufferedOutput.error(
            "stress: \(counts.acknowledged) acknowledged (\(counts.performed) performed, \(counts.alreadyDone) already done), \(counts.released) effects released, \(counts.leftPending) left pending-unknown and retried, \(counts.compactions) compactions\(automatic)")
        if let failure {
            UnbufferedOutput.error("onceledger stress: error: \(failure)")
            throw ExitCode(ExitCodes.operational)
        }
        if let signal = stop.received {
            UnbufferedOutput.error("stress: stopped by \(StressStop.name(signal)); the ledger was closed cleanly")
            throw ExitCode(128 + signal)
        }
    }
}

/// SIGINT and SIGTERM as requests to stop (`StressCommand`): the signals are ignored (so
/// they no longer kill the process) and watched by dispatch sources instead.
/// `@unchecked Sendable`: `sources` is set once in `init` and afterwards only cancelled.
final class StressStop: @unchecked Sendable {
    static let signals: [Int32] = [SIGINT, SIGTERM]

    /// The first stop signal, shared with the sources' handlers.
    private final class First: Sendable {
        let value = Atomic<Int32>(0)
    }

    private let first = First()
    private let sources: [any DispatchSourceSignal]

    init() {
        let first = self.first
        sources = StressStop.signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if first.value.compareExchange(expected: 0, desired: number, ordering: .relaxed).exchanged {
                    UnbufferedOutput.error("stress: \(StressStop.name(number)) received: starting no new calls; finishing the calls in flight, then closing the ledger")
                }
            }
            source.resume()
            return source
        }
    }

    /// The first stop signal received, if any.
    var received: Int32? {
        let value = first.value.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }

    func uninstall() {
        for source in sources { source.cancel() }
    }

    static func name(_ signal: Int32) -> String {
        signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"
    }
}

/// The shared state of one stress run: the next call index, counters, the first error.
final class StressWorkload: Sendable {
    struct Counts {
        var acknowledged = 0
        var performed = 0
        var alreadyDone = 0
        var released = 0
        var leftPending = 0
        var compactions = 0
    }

    let ledger: Ledger
    let effects: Int
    let keyCount: Int
    let seed: UInt64
    let compactEvery: Int
    let failPercent: Int
    let receiptBytesMax: Int
    let stop: StressStop
    let nextIndex = Atomic<Int>(0)
    let counts = Mutex(Counts())
    private let firstFailure = Mutex<String?>(nil)
    /// Attempts of one call before the run gives up (each fails with --fail-percent).
    static let attemptsMax = 1000

    init(ledger: Ledger, effects: Int, keyCount: Int, seed: UInt64, compactEvery: Int, failPercent: Int,
         receiptBytesMax: Int, stop: StressStop) {
        self.ledger = ledger
        self.effects = effects
        self.keyCount = keyCount
        self.seed = seed
        self.compactEvery = compactEvery
        self.failPercent = failPercent
        self.receiptBytesMax = receiptBytesMax
        self.stop = stop
    }

    var failure: String? { firstFailure.withLock { $0 } }

    private func fail(_ text: String) {
        firstFailure.withLock { if $0 == nil { $0 = text } }
    }

    /// A test-injected failure of the stress effect (not a ledger failure).
    struct InjectedFailure: Error, CustomStringConvertible {
        var description: String { "injected effect failure (stress --fail-percent)" }
    }

    /// Takes call indices until none are left, a call failed for real, or a stop signal
    /// came (a call already taken is finished, retries included).
    func worker() async {
        while failure == nil && stop.received == nil {
            let index = nextIndex.wrappingAdd(1, ordering: .relaxed).oldValue
            guard index < effects else { return }
            var random = SeededRandom(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
            let key = "stress-\(random.next() % UInt64(keyCount))"
            let receiptBytes = receiptBytesMax == 0 ? 0 : Int(random.next() % UInt64(receiptBytesMax + 1))
            var attempt = 0
            while true {
                attempt += 1
                let roll = Int(random.next() % 200)
                let failPercent = self.failPercent
                do {
                    let outcome = try await ledger.onceBytes(IdempotencyKey(key), whenPending: .retry) { context in
                        // Rolls are out of 200: half of --fail-percent each.
                        if roll < failPercent {
                            self.counts.withLock { $0.released += 1 }
                            throw EffectDidNotHappen("injected by stress --fail-percent")
                        }
                        if roll < 2 * failPercent {
                            self.counts.withLock { $0.leftPending += 1 }
                            throw InjectedFailure()
                        }
                        var receipt = Array("\(context.token)/\(context.attempt)".utf8)
                        receipt = Array(receipt.prefix(receiptBytes))
                        while receipt.count < receiptBytes { receipt.append(UInt8(ascii: "."))}
                        return receipt
                    }
                    // The call returned: its completion (or the earlier one) is durable.
                    UnbufferedOutput.line("ack \(key)\n")
                    let acknowledged = counts.withLock { counts -> Int in
                        counts.acknowledged += 1
                        if outcome.wasPerformed { counts.performed += 1 } else { counts.alreadyDone += 1 }
                        return counts.acknowledged
                    }
                    if compactEvery > 0 && acknowledged % compactEvery == 0 {
                        do {
                            try await ledger.compact()
                            counts.withLock { $0.compactions += 1 }
                        } catch {
                            fail("compaction failed: \(error)")
                            return
                        }
                    }
                    break
                } catch let error as LedgerError where error.code == .released {
                    // An injected release (our effect threw EffectDidNotHappen; a concurrent
                    // caller's failure is never handed to us): the key is absent; call again.
                } catch let error as LedgerError where error.code == .effectFailed && error.underlyingError is InjectedFailure {
                    // An injected failure: the key is pending-unknown; call again (retry policy).
                } catch {
                    fail("once(\"\(key)\") failed: \(error)")
                    return
                }
                if attempt >= StressWorkload.attemptsMax {
                    fail("once(\"\(key)\") failed \(attempt) times in a row")
                    return
                }
                if failure != nil { return }
            }
        }
    }

    /// A progress line on standard error (a terminal) every half second.
    func reportProgress() async {
        let clock = MonotonicClock()
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            let counts = counts.withLock { $0 }
            let rate = Double(counts.acknowledged) / max(clock.elapsedSeconds, 0.001)
            UnbufferedOutput.progress(
                "\r  \(Format.grouped(counts.acknowledged))/\(Format.grouped(effects)) acknowledged, \(Format.rate(rate))/s, \(counts.compactions) compactions  ")
        }
        UnbufferedOutput.progress("\n")
    }
}
