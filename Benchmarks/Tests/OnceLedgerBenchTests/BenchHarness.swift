// Runs the built `onceledger-bench` executable (this test target depends on it, so
// `swift test --package-path Benchmarks` builds it) and captures its output and exit code.
import Foundation

enum Bench {
    /// `.build/<config>/onceledger-bench`, next to the test bundle.
    static var executableURL: URL {
        var directory = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("onceledger-bench")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("onceledger-bench")
    }

    struct Result {
        var exitCode: Int32
        var stdout: String
        var stderr: String
    }

    /// How long a run may take before the test kills it: far beyond what the tiny workloads
    /// need, only so a hang fails the test instead of the whole CI run (no timing assertion).
    static let patienceSeconds = 600

    /// Runs `onceledger-bench arguments…` to completion. Its outputs go to files, not pipes
    /// (a pipe's write end is inherited by any program started meanwhile, such as the
    /// PostgreSQL server, and a read to its end would wait for that program); its end is
    /// awaited through `terminationHandler` with a bound, never `waitUntilExit`.
    static func run(_ arguments: [String]) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.path + "/onceledger-bench-run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outPath = directory + "/stdout"
        let errPath = directory + "/stderr"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = executableURL
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        let ended = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in ended.signal() }
        try process.run()
        try? out.close()
        try? err.close()
        var timedOut = false
        if ended.wait(timeout: .now() + .seconds(patienceSeconds)) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            ended.wait()
        }
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        var stderr = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
        if timedOut { stderr += "\n[the test killed onceledger-bench: it did not end within \(patienceSeconds) s]" }
        return Result(exitCode: status, stdout: String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self),
                      stderr: stderr)
    }
}
