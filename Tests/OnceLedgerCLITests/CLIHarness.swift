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
        let process = Process()
        process.executableURL = executableURL
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(exitCode: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}
