// Test support for the multi-process tests: starts `onceledger-postgres-worker` processes
// (this test target depends on the executable, so `swift test` builds it), collects their
// output lines as they come, waits on conditions over those lines (with a generous bound, so
// a broken build fails instead of hanging; never a timing assertion), sends signals, and
// reads the effects file the workers append to.
import Foundation
import OnceLedgerTestProcess
import Synchronization

final class WorkerProcess: Sendable {
    /// `.build/<config>/onceledger-postgres-worker`, next to the test bundle.
    static var executableURL: URL {
        var directory = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("onceledger-postgres-worker")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("onceledger-postgres-worker")
    }

    /// How long a wait for a worker's line or exit may take before the test gives up: far
    /// beyond what any step needs, only so a broken run fails instead of hanging.
    static let patienceSeconds: Double = 180

    struct Output {
        var lines: [String] = []
        var standardError = ""
        var exited = false
        var status: Int32 = 0
        var signal: Int32?
    }

    let name: String
    private let child: ChildProcess
    private let printed = Printed()

    /// The worker's standard output lines so far (appended by the reader thread).
    private final class Printed: Sendable {
        let lines = Mutex<[String]>([])
    }

    /// Starts a worker named `name` with `arguments` (`--name` is added), through
    /// `ChildProcess` (it inherits no descriptor but 0–2 and is reaped with `waitpid`).
    init(name: String, _ arguments: [String]) throws {
        self.name = name
        let printed = self.printed
        child = try ChildProcess.start(WorkerProcess.executableURL.path, ["--name", name] + arguments) { line in
            printed.lines.withLock { $0.append(line) }
        }
    }

    /// The lines so far and, once the worker ended (`ended`), how.
    private func state(_ ended: ChildProcess.Result?) -> Output {
        var state = Output(lines: printed.lines.withLock { $0 })
        if let ended {
            state.exited = true
            state.standardError = ended.stderr
            state.status = ended.signal == nil ? ended.exitCode : 0
            state.signal = ended.signal
        }
        return state
    }

    var snapshot: Output { state(child.ended) }

    var lines: [String] { snapshot.lines }

    /// Waits until `condition` holds for the output (or the bound passes); returns whether it held.
    @discardableResult
    func wait(until condition: (Output) -> Bool) -> Bool {
        child.wait(patience: WorkerProcess.patienceSeconds) { condition(state($0)) }
        return condition(snapshot)
    }

    /// Waits for a line equal to `line` or starting with it followed by a space.
    @discardableResult
    func wait(forLine line: String) -> Bool {
        wait { $0.lines.contains { $0 == line || $0.hasPrefix(line + " ") } }
    }

    /// Waits until the process has exited.
    @discardableResult
    func waitForExit() -> Output {
        wait { $0.exited }
        return snapshot
    }

    func send(_ signal: Int32) { child.send(signal) }

    /// The `performed`/`already` lines: key → (performed here?, receipt).
    var outcomes: [String: (performed: Bool, receipt: String)] {
        var result: [String: (Bool, String)] = [:]
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard parts.count == 3, parts[0] == "performed" || parts[0] == "already" else { continue }
            result[parts[1]] = (parts[0] == "performed", parts[2])
        }
        return result
    }

    /// The `error KEY CODE …` lines: key → code.
    var errors: [String: String] {
        var result: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
            guard parts.count >= 3, parts[0] == "error" else { continue }
            result[parts[1]] = parts[2]
        }
        return result
    }

    /// Everything the worker printed, for a failure message.
    var transcript: String {
        let state = snapshot
        return "worker \(name): exited \(state.exited) status \(state.status) signal \(state.signal.map(String.init) ?? "none")\n"
            + state.lines.joined(separator: "\n") + "\nstderr: " + state.standardError
    }

    /// Stops the worker if it still runs (a test that failed early), and waits for it.
    func terminate() {
        if !snapshot.exited {
            send(SIGCONT)
            send(SIGKILL)
        }
        waitForExit()
    }
}

/// One execution of an effect, as a worker recorded it (append + fsync before the effect
/// returned): `KEY TOKEN WORKER ATTEMPT`.
struct EffectExecution: Hashable {
    var key: String
    var token: String
    var worker: String
    var attempt: String

    static func read(_ path: String) -> [EffectExecution] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count == 4 else { return nil }
            return EffectExecution(key: parts[0], token: parts[1], worker: parts[2], attempt: parts[3])
        }
    }
}

/// A scratch directory for one test's effects file and release files.
struct ScratchDirectory {
    let path: String

    init(_ name: String) throws {
        path = FileManager.default.temporaryDirectory.path + "/onceledger-mp-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    var effects: String { path + "/effects" }

    func file(_ name: String) -> String { path + "/" + name }

    func touch(_ name: String) {
        FileManager.default.createFile(atPath: file(name), contents: Data())
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
