import ArgumentParser
import Foundation
import OnceLedger
import OnceLedgerFormat
import Synchronization

/// `onceledger demo [DIR]`: the README's first command. In a fresh
/// directory it performs two effects with `Ledger.once`, shows a duplicate call being
/// skipped, lets a child process die by SIGKILL in the middle of an effect, reopens the
/// ledger, shows the pending-unknown entry that left, resolves it by reconciliation
/// (asking the "receiver" whether it saw the effect's token), and runs
/// `onceledger verify` on the result.
///
/// Exit status: 0 when the walkthrough went as shown and `verify` exits 0 or 1;
/// otherwise `verify`'s own status (4 damage left, 8 operational), or 8 if a step of
/// the demo itself failed.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Perform effects, crash a child mid-effect, recover, reconcile and verify: a walkthrough.")

    @Argument(help: "A new or empty directory for the demo ledger (default: a fresh temporary directory).")
    var dir: String?

    static let crashKey = "webhook:order-43-shipped"

    func run() async throws {
        let directory = try prepareDirectory()
        print("OnceLedger demo in \(directory)")

        // 1. Two effects.
        section(1, "Perform two effects. `once` makes the intent durable, runs the effect, then makes the completion durable.")
        let ledger = try await open(directory)
        for (key, receipt) in [("email:welcome-alice", "msg-1001"), ("charge:order-42", "ch_42")] {
            let outcome = try await ledger.once(IdempotencyKey(key), as: String.self) { effect in
                // A real effect passes `effect.token` downstream as its idempotency key.
                receipt
            }
            say("\(outcome.wasPerformed ? "performed" : "skipped  ")  \(pad(key))  receipt \(pad("\"\(outcome.receipt)\"", 10))  token \(outcome.entry.token)")
        }

        // 2. A duplicate.
        section(2, "Call `once` again with a key that is done: the effect does not run.")
        let ran = Atomic<Bool>(false)
        let again = try await ledger.once("email:welcome-alice", as: String.self) { _ in
            ran.store(true, ordering: .relaxed)
            return "msg-9999"
        }
        if again.wasPerformed || ran.load(ordering: .relaxed) { throw DemoFailure("the duplicate ran its effect") }
        say("skipped    \(pad("email:welcome-alice"))  already done at \(time(again.entry.timeMilliseconds)); stored receipt \"\(again.receipt)\"")
        try await close(ledger)

        // 3. The crash.
        section(3, "A child process calls `once(\"\(DemoCommand.crashKey)\")` and dies by SIGKILL inside the effect.")
        let child = try await runChild(directory: directory)
        for line in child.lines { say("child: \(line)") }
        say("child: \(child.exit)")

        // 4. Reopen: pending-unknown.
        section(4, "Reopen. The key has a durable intent and no completion: pending-unknown (it may or may not have happened).")
        let reopened = try await open(directory)
        say(entryTable(try reopened.entries()))
        say("")
        say("`once` with the default policy (fail closed) refuses to guess:")
        do {
            _ = try await reopened.once(IdempotencyKey(DemoCommand.crashKey), as: String.self) { _ in
                throw DemoFailure("the effect ran again under fail-closed")
            }
            throw DemoFailure("once did not report the pending-unknown entry")
        } catch let error as LedgerError where error.code == .pendingUnknown {
            say("  throws LedgerError(.pendingUnknown) for \"\(error.key ?? "")\" carrying the intent: attempt \(error.entry?.attempt ?? 0), token \(error.entry?.token ?? "")")
        }

        // 5. Reconcile.
        section(5, "Resolve it by reconciliation: ask the receiver whether it saw the entry's token.")
        let deliveries = child.deliveries
        let rerun = Atomic<Bool>(false)
        let resolved = try await reopened.once(
            IdempotencyKey(DemoCommand.crashKey), as: String.self,
            whenPending: .reconcile { entry in
                guard let delivery = deliveries[entry.token] else {
                    say("reconcile: the receiver has no delivery with Idempotency-Key \(entry.token)")
                    return .didNotHappen
                }
                say("reconcile: the receiver has delivery \(delivery) with Idempotency-Key \(entry.token)")
                return .happened(delivery)
            }
        ) { _ in
            rerun.store(true, ordering: .relaxed)
            return "sent-again"
        }
        say(rerun.load(ordering: .relaxed)
            ? "the receiver had not seen it, so the effect ran now: receipt \"\(resolved.receipt)\""
            : "recorded as done with receipt \"\(resolved.receipt)\": the webhook was not sent twice")
        say(entryTable(try reopened.entries()))
        try await close(reopened)

        // 6. Verify.
        section(6, "onceledger verify \(directory)")
        let verify = try await runSelf(["verify", directory])
        for line in verify.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast(verify.output.hasSuffix("\n") ? 1 : 0) {
            say(String(line))
        }
        say("(verify exited with status \(verify.status))")
        print("\nThe ledger is left in \(directory); try `onceledger entries \(directory)` or `onceledger dump \(directory)`.")
        if verify.status > 1 { throw ExitCode(verify.status) }
    }

    // MARK: Steps

    struct DemoFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    private func open(_ directory: String) async throws -> Ledger {
        try await BlockingThread.run(name: "demo-open") { try Ledger.open(directory: directory) }
    }

    private func close(_ ledger: Ledger) async throws {
        try await BlockingThread.run(name: "demo-close") { try ledger.close() }
    }

    private func prepareDirectory() throws -> String {
        guard let dir else {
            var template = Array((NSTemporaryDirectory() + "/onceledger-demo-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else { throw ValidationError("cannot create a temporary directory") }
            return URL(fileURLWithPath: String(cString: made)).standardizedFileURL.path
        }
        let path = URL(fileURLWithPath: dir).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue, try FileManager.default.contentsOfDirectory(atPath: path).isEmpty else {
                throw ValidationError("\(path) must be a new or empty directory")
            }
        } else {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        return path
    }

    struct ChildResult: Sendable {
        var lines: [String] = []
        /// The simulated receiver's log: delivery id by Idempotency-Key.
        var deliveries: [String: String] = [:]
        var exit = ""
    }

    /// Runs `onceledger demo-child DIR` and turns its protocol lines into prose.
    private func runChild(directory: String) async throws -> ChildResult {
        let run = try await runSelf(["demo-child", directory, "--key", DemoCommand.crashKey])
        var result = ChildResult()
        for line in run.output.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            if fields.count == 4, fields[0] == "intent" {
                result.lines.append("intent for \(fields[1]) is durable (attempt \(fields[3])); the effect starts")
            } else if fields.count == 3, fields[0] == "delivered" {
                result.deliveries[fields[1]] = fields[2]
                result.lines.append("POST /hooks/order-shipped  Idempotency-Key: \(fields[1])  -> the receiver logs delivery \(fields[2])")
            } else {
                result.lines.append(String(line))
            }
        }
        if run.signal == SIGKILL {
            result.exit = "killed by SIGKILL before `once` could record the completion"
        } else {
            throw DemoFailure("the child was not killed as planned: \(run.signal.map { "signal \($0)" } ?? "exit status \(run.status)")\n\(run.output)")
        }
        return result
    }

    struct SelfRun: Sendable {
        var status: Int32
        var signal: Int32?
        /// Standard output and standard error, interleaved as written.
        var output: String
    }

    /// Runs this executable with `arguments`, capturing its output.
    private func runSelf(_ arguments: [String]) async throws -> SelfRun {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        return try await BlockingThread.run(name: "demo-child") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let killed = process.terminationReason == .uncaughtSignal
            return SelfRun(status: killed ? 128 + process.terminationStatus : process.terminationStatus,
                           signal: killed ? process.terminationStatus : nil, output: String(decoding: data, as: UTF8.self))
        }
    }

    // MARK: Presentation

    private func section(_ number: Int, _ title: String) {
        print("\n\(number). \(title)")
    }

    private func pad(_ text: String, _ width: Int = 24) -> String {
        text.padding(toLength: max(text.count, width), withPad: " ", startingAt: 0)
    }

    private func entryTable(_ entries: [EntryInfo]) -> String {
        var table = TextTable(["key", "state", "attempt", "receipt"], leftAligned: [1, 3])
        for entry in entries {
            table.add([entry.key, entry.status.rawValue, "\(entry.attempt)",
                       entry.status == .done ? String(decoding: entry.receipt, as: UTF8.self) : ""])
        }
        return table.render()
    }

    private func time(_ milliseconds: UInt64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}

/// One line of demo output, indented under its step.
private func say(_ text: String) {
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        print(line.isEmpty ? "" : "   " + line)
    }
}
