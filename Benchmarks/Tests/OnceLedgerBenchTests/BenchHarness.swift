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

    /// Runs `onceledger-bench arguments…` to completion. Both outputs are read at the
    /// same time, so a full pipe on one cannot stall the other.
    static func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = executableURL
        process.arguments = arguments
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
