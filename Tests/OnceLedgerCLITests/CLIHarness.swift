// Shared helpers for the CLI tests: locate the built `onceledger` executable (this test
// target depends on it, so `swift test` builds it) and run it, capturing output and exit code.
import Foundation
import OnceLedgerTestProcess

enum CLI {
    /// `.build/<config>/onceledger`, next to the test bundle.
    static var executableURL: URL {
        let bundle = Bundle.main.bundleURL
        var directory = bundle
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("onceledger")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        let arguments0 = URL(fileURLWithPath: CommandLine.arguments[0])
        return arguments0.deletingLastPathComponent().appendingPathComponent("onceledger")
    }

    struct Result {
        var exitCode: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `onceledger arguments…` to completion.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        return try runProcess(executableURL, arguments, environment: env)
    }

    /// Runs any program to completion, capturing both outputs (read at the same time, so a
    /// full pipe on one cannot stall the other), through `ChildProcess`: no descriptor but
    /// 0–2 is inherited, and a program that outlives its bound is killed and fails the test.
    /// A death by a signal is reported as exit code 128 + the signal, as a shell does.
    static func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
                           patience: Double = ChildProcess.patienceSeconds) throws -> Result {
        let result = try ChildProcess.run(executable.path, arguments, environment: environment, patience: patience)
        return Result(exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr)
    }
}
