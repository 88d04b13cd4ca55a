// Proves, with real processes and real files, that an acknowledged effect is never lost:
// `onceledger stress` (a workload of `once` calls that prints `ack KEY` once a call has
// returned, i.e. once its completion is durable) is killed with SIGKILL at seeded random
// moments — mid-batch, mid-rollover, mid-compaction, mid-open — then the ledger is reopened
// and every acknowledged key must be done, checked through the library (`Ledger.open` +
// `entry`) and through `onceledger entries --state done --json`; `onceledger verify` must
// exit 0 or 1. Rounds reuse one directory, so each run also starts on the pending-unknown
// keys the previous kill left (the retry policy runs them again). Every other round the
// ledger compacts by itself (`--compact-after-bytes`, automatic compaction) instead of every
// 400 calls. A second group injects syscall faults into a real `stress` run with strace into the call
// that writes and syncs a commit (`-P segment -e inject=pwritev2:error=EIO`, `:error=ENOSPC`,
// and EINTR; `pwrite64` and `fdatasync` where the kernel has no `RWF_DSYNC`): the process must
// fail with a clear error (or, for EINTR, not fail) and lose nothing acknowledged.
// Rounds: ONCELEDGER_KILL_ROUNDS (default 4); seed: ONCELEDGER_KILL_SEED (default random,
// printed with every failure).
import COnceSupport
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import OnceLedgerTestProcess
import Testing

@Suite(.serialized) struct KillTests {
    /// Tuning that makes a short run cross many segment rollovers and compactions.
    static let segmentBytes: UInt64 = 16 * 1024
    static let stressOptions = ["--segment-bytes", "\(segmentBytes)", "--fail-percent", "2"]

    @Test func sigkillAtRandomMomentsLosesNoAcknowledgedKey() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["ONCELEDGER_KILL_ROUNDS"] ?? "") ?? 4
        let seed = UInt64(ProcessInfo.processInfo.environment["ONCELEDGER_KILL_SEED"] ?? "")
            ?? UInt64.random(in: 0...UInt64.max)
        var random = SeededRandom(seed: seed)
        let directory = try KillTestDirectory("kill")
        defer { directory.remove() }
        var acknowledged: Set<String> = []
        var entriesCommandChecked = false

        for round in 1...max(1, rounds) {
            let context = "round \(round) of \(rounds), ONCELEDGER_KILL_SEED=\(seed)"
            // Kill after this many acknowledgements (0: during open or the first batch),
            // plus up to 5 ms more so the moment falls anywhere in the I/O cycle.
            let ackTarget = random.next() % 4 == 0 ? 0 : Int(random.next() % 1500)
            let extraMicroseconds = UInt32(random.next() % 5000)
            // Every other round the ledger compacts by itself instead (compactAfterLogBytes).
            let compaction = round % 2 == 0 ? ["--compact-after-bytes", "65536"] : ["--compact-every", "400"]
            let arguments = ["stress", directory.path, "--effects", "1000000", "--concurrency", "8", "--keys", "4000",
                             "--seed", "\(random.next())"] + KillTests.stressOptions + compaction
            let run = try KillTestProcess.start(arguments)
            run.waitForAcknowledgements(ackTarget)
            usleep(extraMicroseconds)
            run.kill()
            let result = run.finish()
            #expect(result.signal == SIGKILL || result.status == 0,
                    "\(context): stress did not run until killed: status \(result.status)\n\(result.standardError)")
            acknowledged.formUnion(result.acknowledgedKeys)

            // Every key ever acknowledged is done, through the library…
            let ledger = try Ledger.open(directory: directory.path,
                                         configuration: LogConfiguration(segmentBytes: KillTests.segmentBytes))
            var missing: [String] = []
            for key in acknowledged.sorted() where try await ledger.entry(key)?.status != .done {
                missing.append("\(key): \(try await ledger.entry(key).map { $0.status.rawValue } ?? "no entry")")
            }
            try ledger.close()
            #expect(missing.isEmpty,
                    "\(context): \(missing.count) acknowledged keys are not done after kill at ack \(ackTarget) + \(extraMicroseconds) µs: \(missing.prefix(10))")

            // …and through the CLI.
            let verify = try CLI.run(["verify", directory.path])
            #expect(verify.exitCode == 0 || verify.exitCode == 1,
                    "\(context): verify exited \(verify.exitCode)\n\(verify.stdout)\(verify.stderr)")
            let entries = try CLI.run(["entries", directory.path, "--state", "done", "--json"])
            #expect(entries.exitCode == 0, "\(context): entries exited \(entries.exitCode)\n\(entries.stderr)")
            if entries.exitCode == 0 {
                let done = try KillTests.keys(fromEntriesJSON: entries.stdout)
                let notListed = acknowledged.subtracting(done)
                #expect(notListed.isEmpty, "\(context): entries --state done does not list \(notListed.sorted().prefix(10))")
                entriesCommandChecked = true
            }
        }
        #expect(entriesCommandChecked)
        #expect(!acknowledged.isEmpty, "ONCELEDGER_KILL_SEED=\(seed): no round acknowledged anything")

        // After all the kills, a run to completion on the same directory succeeds.
        let final = try KillTestProcess.start(["stress", directory.path, "--effects", "300", "--concurrency", "4",
                                             "--keys", "4000", "--seed", "\(seed)"] + KillTests.stressOptions
                                             + ["--compact-every", "400"]).finish()
        #expect(final.status == 0 && final.signal == nil,
                "ONCELEDGER_KILL_SEED=\(seed): a run after the kills failed: \(final.status)\n\(final.standardError)")
        #expect(final.acknowledgements == 300)
    }

    // MARK: Syscall faults (strace)

    /// A failing sync (EIO) and a full disk (ENOSPC), each early and later in the run.
    /// Where commits are one `pwritev2(RWF_DSYNC)` both fail that call; elsewhere the
    /// EIO goes to `fdatasync` and the ENOSPC to `pwrite64`.
    @Test(.enabled(if: KillTestStrace.usable, KillTestStrace.skipMessage),
          arguments: [(1, "EIO"), (30, "EIO"), (7, "ENOSPC"), (45, "ENOSPC")])
    func injectedSyscallFailureFailsClearlyAndLosesNothing(when: Int, errorName: String) throws {
        let call = KillTestStrace.commitCall(failing: errorName)
        let directory = try KillTestDirectory("strace-\(call)-\(when)")
        defer { directory.remove() }
        // The ledger's first segment (created by the stress run itself: -P also matches a
        // path that appears later). fdatasync takes a descriptor; strace resolves it.
        let segment = directory.path + "/" + LedgerFileNames.segment(1)
        let errorText = errorName == "EIO" ? "Input/output error" : "No space left on device"
        let strace = ["-f", "-qq", "-o", "/dev/null", "-P", segment, "-e", "trace=\(call)",
                      "-e", "inject=\(call):error=\(errorName):when=\(when)"]
        let result = try KillTestProcess.start(
            ["stress", directory.path, "--effects", "2000", "--concurrency", "4", "--seed", "\(when)"],
            tracedBy: strace).finish()
        let context = "strace inject=\(call):error=\(errorName):when=\(when)"
        #expect(result.status == 8 && result.signal == nil,
                "\(context): expected exit 8, got \(result.status)\n\(result.standardError)")
        let failed = switch call {
        case "pwrite64": "write failed"
        case "pwritev2": "write with RWF_DSYNC (the write and its fdatasync) failed"
        default: "\(call) failed"
        }
        #expect(result.standardError.contains(failed) && result.standardError.contains(errorText),
                "\(context): the error does not say what failed:\n\(result.standardError)")
        #expect(result.standardError.contains(segment), "\(context): the error does not name the file:\n\(result.standardError)")
        try KillTests.expectDone(result.acknowledgedKeys, in: directory.path, context)
        let verify = try CLI.run(["verify", directory.path])
        #expect(verify.exitCode == 0 || verify.exitCode == 1, "\(context): verify exited \(verify.exitCode)\n\(verify.stdout)")
    }

    @Test(.enabled(if: KillTestStrace.usable, KillTestStrace.skipMessage),
          arguments: KillTestStrace.dataSyncWrites ? ["pwritev2"] : ["fdatasync", "pwrite64"])
    func interruptedSyscallsAreRetried(call: String) throws {
        let directory = try KillTestDirectory("strace-eintr-\(call)")
        defer { directory.remove() }
        let segment = directory.path + "/" + LedgerFileNames.segment(1)
        let strace = ["-f", "-qq", "-o", "/dev/null", "-P", segment, "-e", "trace=\(call)",
                      "-e", "inject=\(call):error=EINTR:when=2+3"]
        let result = try KillTestProcess.start(
            ["stress", directory.path, "--effects", "300", "--concurrency", "4", "--seed", "5"],
            tracedBy: strace).finish()
        let context = "strace inject=\(call):error=EINTR:when=2+3"
        #expect(result.status == 0 && result.signal == nil, "\(context): exit \(result.status)\n\(result.standardError)")
        #expect(result.acknowledgements == 300, "\(context)")
        try KillTests.expectDone(result.acknowledgedKeys, in: directory.path, context)
    }

    // MARK: Helpers

    static func expectDone(_ keys: Set<String>, in directory: String, _ context: String) throws {
        let store = try FileStore(directory: directory, createIfMissing: false)
        defer { try? store.close() }
        let missing = keys.sorted().filter { (try? store.currentEntry($0))??.status != .done }
        #expect(missing.isEmpty, "\(context): acknowledged keys not done on reopen: \(missing.prefix(10))")
    }

    /// Keys of `entries --json` output (one JSON object per line).
    static func keys(fromEntriesJSON text: String) throws -> Set<String> {
        var keys: Set<String> = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            if let key = object?["key"] as? String, (object?["state"] as? String) ?? "done" == "done" { keys.insert(key) }
        }
        return keys
    }
}

/// A running `onceledger stress` (optionally under strace) whose `ack` lines are read as
/// they arrive, so the test can kill it after a given number of acknowledgements. Started
/// through `ChildProcess`: every wait is bounded, a hung child is killed and fails the test.
final class KillTestProcess: @unchecked Sendable {
    struct Result {
        var status: Int32
        var signal: Int32?
        var acknowledgedKeys: Set<String>
        /// `ack` lines (a key chosen twice is acknowledged twice).
        var acknowledgements: Int
        var standardError: String
    }

    /// The `ack` lines so far: only whole lines count (a line cut by the kill was never fully written).
    private final class Acknowledgements: @unchecked Sendable {
        let lock = NSLock()
        var keys: Set<String> = []
        var count = 0

        func take(_ line: String) {
            guard line.hasPrefix("ack ") else { return }
            lock.lock()
            keys.insert(String(line.dropFirst(4)))
            count += 1
            lock.unlock()
        }

        var current: (keys: Set<String>, count: Int) {
            lock.lock()
            defer { lock.unlock() }
            return (keys, count)
        }
    }

    private let child: ChildProcess
    private let acknowledgements: Acknowledgements

    private init(child: ChildProcess, acknowledgements: Acknowledgements) {
        self.child = child
        self.acknowledgements = acknowledgements
    }

    static func start(_ arguments: [String], tracedBy strace: [String]? = nil) throws -> KillTestProcess {
        let acknowledgements = Acknowledgements()
        let child = if let strace {
            try ChildProcess.start(KillTestStrace.path!, strace + [CLI.executableURL.path] + arguments,
                                   onLine: acknowledgements.take)
        } else {
            try ChildProcess.start(CLI.executableURL.path, arguments, onLine: acknowledgements.take)
        }
        return KillTestProcess(child: child, acknowledgements: acknowledgements)
    }

    /// Waits until `count` acknowledgements arrived or the process closed its output
    /// (a guard of two minutes keeps a hung child from hanging the test).
    func waitForAcknowledgements(_ count: Int) {
        child.wait(patience: 120) { _ in acknowledgements.current.count >= count }
    }

    func kill() { child.send(SIGKILL) }

    /// Sends `signal` (e.g. SIGTERM) to the process, if it still runs.
    func send(_ signal: Int32) { child.send(signal) }

    /// Waits for the process to end and both pipes to close.
    func finish() -> Result {
        let result = child.finish()
        let acknowledged = acknowledgements.current
        return Result(status: result.exitCode, signal: result.signal, acknowledgedKeys: acknowledged.keys,
                      acknowledgements: acknowledged.count, standardError: result.stderr)
    }
}

/// strace, if installed and allowed to trace (ptrace may be forbidden in a container).
enum KillTestStrace {
    static let path: String? = ["/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static let usable: Bool = {
        guard let path, let result = try? ChildProcess.run(path, ["-f", "-qq", "-o", "/dev/null", "/bin/true"], patience: 60)
        else { return false }
        return result.exitCode == 0
    }()

    /// Whether this kernel takes `pwritev2(RWF_DSYNC)`, so a commit is that one call (probed
    /// the way `PosixStorage` finds out: by making one).
    static let dataSyncWrites: Bool = {
        let path = NSTemporaryDirectory() + "/onceledger-dsync-probe-\(getpid())"
        let fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        guard fd >= 0 else { return false }
        defer {
            close(fd)
            unlink(path)
        }
        return [UInt8](repeating: 0, count: 16).withUnsafeBytes { ol_pwrite_dsync(fd, $0.baseAddress, 16, 0) } == 16
    }()

    /// The system call that fails a commit with `errorName`.
    static func commitCall(failing errorName: String) -> String {
        dataSyncWrites ? "pwritev2" : (errorName == "EIO" ? "fdatasync" : "pwrite64")
    }

    static var skipMessage: Comment {
        path == nil ? "strace is not installed (apt-get install strace); syscall fault injection skipped"
            : "strace cannot trace here (ptrace not permitted); syscall fault injection skipped"
    }
}

/// A fresh directory under the temporary directory, removed by `remove()`.
struct KillTestDirectory {
    let path: String

    init(_ label: String) throws {
        var template = Array((NSTemporaryDirectory() + "/onceledger-\(label)-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = URL(fileURLWithPath: String(cString: made)).standardizedFileURL.path
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

