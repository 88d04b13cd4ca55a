// Shared helpers for the CLI tests: locate the built `onceledger` executable (this test
// target depends on it, so `swift test` builds it) and run it, capturing output and exit code.
import Foundation

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
    /// full pipe on one cannot stall the other). A death by a signal is reported as exit
    /// code 128 + the signal, as a shell does.
    static func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        nonisolated(unsafe) var errData = Data()
        let errorDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            errorDone.signal()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        errorDone.wait()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Result(exitCode: status, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}
