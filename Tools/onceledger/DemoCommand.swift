import ArgumentParser
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// `onceledger demo [DIR]`: the log layer's walkthrough (DESIGN §4). Records two
/// effects, shows the records, lets a child process append more and die by
/// SIGKILL halfway through writing a record, then reopens the ledger and shows
/// how recovery classified the tail and every entry. Interim: the full product
/// demo (the `once` API) replaces the raw appends later.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Append, crash a child process mid-write, recover, and show the classification.")

    @Argument(help: "A new or empty directory for the demo ledger (default: a fresh temporary directory).")
    var dir: String?

    @Option(help: "Appends the child gets acknowledged before it crashes.")
    var acks: Int = 5

    @Flag(help: "Kill the child between appends instead of in the middle of a write.")
    var cleanKill = false

    func validate() throws {
        guard (1...1000).contains(acks) else { throw ValidationError("--acks must be in 1...1000") }
    }

    func run() async throws {
        let directory = try prepareDirectory()
        print("OnceLedger demo (log layer) in \(directory)")

        // 1. A clean session.
        print("\n1. Open a new ledger and record two effects (an intent before each, a completion after):")
        let engine = try await BlockingThread.run { try LogEngine.open(directory: directory) }
        print("   open: \(engine.recovery.row.label) (\(engine.recovery.row.summary))")
        let effects = [("email:welcome-alice", "msg-1001"), ("charge:order-42", "ch_42")]
        for (key, receipt) in effects {
            let intent = try await engine.append(.intent(.init(key: key, attempt: 1, timeMilliseconds: now())))
            // ... the effect would run here ...
            let completion = try await engine.append(.completion(.init(
                key: key, attempt: 1, timeMilliseconds: now(), receipt: Array(receipt.utf8))))
            print("   #\(intent) intent, #\(completion) completion  \(key)  (durable before append returned)")
        }
        try await BlockingThread.run { try engine.close() }
        print("   closed cleanly (close appends a checkpoint record)")

        // 2. What is on disk.
        print("\n2. The records on disk:")
        let before = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory)
        print(indent(recordTable(try scanRecords(directory)).render()))
        let recordsBeforeCrash = before.recordCount

        // 3. The crash.
        print("\n3. A child process appends more, then dies by SIGKILL\(cleanKill ? " between appends" : " in the middle of a write"):")
        let child = try await runChild(directory: directory)
        for ack in child.acks {
            print("   child: #\(ack.sequence) \(ack.kind) \(ack.key) acknowledged (durable)")
        }
        if let torn = child.torn {
            print("   child: writing #\((child.acks.last?.sequence ?? 0) + 1) \(torn.kind) \(torn.key): only \(torn.bytesWritten) of its \(torn.frameBytes) bytes reached the file")
        }
        print("   child: \(child.exit)")

        // 4. Recovery.
        print("\n4. Reopen: recovery scans the directory and classifies the tail:")
        let (reopened, recovered) = try await BlockingThread.run { () -> (LogEngine, [ScannedRecord]) in
            var records: [ScannedRecord] = []
            let engine = try LogEngine.open(directory: directory, createIfMissing: false,
                                            onRecord: { records.append($0) })
            return (engine, records)
        }
        let report = reopened.recovery
        try await BlockingThread.run { try reopened.close() }
        let sideFiles = try PosixStorage().listDirectory(directory).filter(LedgerFileNames.isTorn).sorted()
        print("   recovery row: \(report.row.label): \(report.row.summary)")
        if let torn = report.tornTail {
            print("   tail:         torn at segment \(torn.segment) offset \(torn.offset), \(torn.byteCount) bytes (\(torn.reason))")
            print("   action:       bytes copied to a side file, segment cut and zeroed there before any new append")
        } else {
            print("   tail:         clean")
        }
        for name in sideFiles {
            let bytes = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0
            print("   side file:    \(name) (\(bytes) bytes)")
        }
        let lastSequence = recovered.last?.header.sequence ?? 0
        let ackedMax = child.acks.map(\.sequence).max() ?? 0
        let lost = child.acks.filter { ack in !recovered.contains { $0.header.sequence == ack.sequence } }
        print("   records:      \(recovered.count) valid (#1-#\(lastSequence)); \(lost.isEmpty ? "all \(child.acks.count)" : "only \(child.acks.count - lost.count) of \(child.acks.count)") acknowledged appends of the child present")
        print("\n   Entries, from the recovered records:")
        print(indent(entryTable(recovered).render()))

        // 5. Summary.
        let states = entryStates(recovered)
        let pending = states.filter { $0.state == "pending-unknown" }.count
        print("\n5. Summary")
        print("   before the crash: \(recordsBeforeCrash) records, closed cleanly")
        print("   the child:        \(child.acks.count) appends acknowledged (#\(child.acks.first?.sequence ?? 0)-#\(ackedMax)), then SIGKILL\(child.torn.map { " with \($0.bytesWritten) bytes of #\(ackedMax + 1) half-written" } ?? "")")
        print("   after recovery:   \(report.row.label), \(recovered.count) records, \(lost.count) acknowledged records lost\(sideFiles.isEmpty ? "" : ", torn bytes kept in \(sideFiles.joined(separator: ", "))")")
        print("   entries:          \(states.count - pending) done, \(pending) pending-unknown (intent durable, completion not: the effect may or may not have happened, and the ledger never guesses)")
        print("   the directory is left in place: \(directory)")
        if !lost.isEmpty {
            print("   LOST: acknowledged sequence numbers \(lost.map { "#\($0.sequence)" }.joined(separator: ", ")) are missing")
            throw ExitCode(1)
        }
    }

    // MARK: Steps

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
        struct Ack: Sendable { var sequence: UInt64; var kind: String; var key: String }
        struct Torn: Sendable { var bytesWritten: Int; var frameBytes: Int; var kind: String; var key: String }
        var acks: [Ack] = []
        var torn: Torn?
        var exit = ""
    }

    /// Runs `onceledger demo-child` and parses its acknowledgement lines.
    private func runChild(directory: String) async throws -> ChildResult {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var arguments = ["demo-child", directory, "--acks", "\(acks)"]
        if cleanKill { arguments.append("--clean-kill") }
        let childArguments = arguments
        return try await BlockingThread.run(name: "demo-child") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = childArguments
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            var result = ChildResult()
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: " ").map(String.init)
                if fields.count == 4, fields[0] == "ack", let sequence = UInt64(fields[1]) {
                    result.acks.append(.init(sequence: sequence, kind: fields[2], key: fields[3]))
                } else if fields.count == 7, fields[0] == "torn", let written = Int(fields[3]),
                          let frame = Int(fields[4]) {
                    result.torn = .init(bytesWritten: written, frameBytes: frame, kind: fields[5], key: fields[6])
                }
            }
            if process.terminationReason == .uncaughtSignal {
                result.exit = process.terminationStatus == SIGKILL
                    ? "killed by signal 9 (SIGKILL): no close, no checkpoint"
                    : "killed by signal \(process.terminationStatus)"
            } else {
                result.exit = "exited with status \(process.terminationStatus) (expected SIGKILL)"
            }
            return result
        }
    }

    // MARK: Presentation

    private func scanRecords(_ directory: String) throws -> [ScannedRecord] {
        var records: [ScannedRecord] = []
        _ = try RecoveryScanner.scan(storage: PosixStorage(), directory: directory, onRecord: { records.append($0) })
        return records
    }

    private func recordTable(_ records: [ScannedRecord]) -> TextTable {
        var table = TextTable(["#", "kind", "key", "detail", "segment:offset"], leftAligned: [1, 2, 3])
        for record in records {
            var key = ""
            var detail = ""
            if case .body(let body) = RecordBody.decode(kind: record.header.kind, record.body) {
                key = body.key ?? ""
                switch body {
                case .completion(let completion): detail = "receipt \"\(String(decoding: completion.receipt, as: UTF8.self))\""
                case .checkpoint: detail = "clean close"
                default: break
                }
            }
            table.add(["\(record.header.sequence)", "\(record.header.kind)", key, detail,
                       "\(record.segment):\(record.offset)"])
        }
        return table
    }

    private struct EntryState {
        var key: String
        var state: String
        var receipt: String
    }

    /// A minimal fold of the records into per-key states (the ledger layer does
    /// this for real later): intent without completion after a crash is
    /// pending-unknown.
    private func entryStates(_ records: [ScannedRecord]) -> [EntryState] {
        var order: [String] = []
        var states: [String: EntryState] = [:]
        for record in records {
            guard case .body(let body) = RecordBody.decode(kind: record.header.kind, record.body),
                  let key = body.key else { continue }
            if states[key] == nil { order.append(key) }
            switch body {
            case .intent: states[key] = EntryState(key: key, state: "pending-unknown", receipt: "")
            case .completion(let completion):
                states[key] = EntryState(key: key, state: "done",
                                         receipt: String(decoding: completion.receipt, as: UTF8.self))
            default: break
            }
        }
        return order.compactMap { states[$0] }
    }

    private func entryTable(_ records: [ScannedRecord]) -> TextTable {
        var table = TextTable(["key", "state", "receipt"], leftAligned: [1, 2])
        for entry in entryStates(records) { table.add([entry.key, entry.state, entry.receipt]) }
        return table
    }

    private func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "   " + $0 }.joined(separator: "\n")
    }

    private func now() -> UInt64 { LogEngine.systemMilliseconds() }
}
