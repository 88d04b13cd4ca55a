import ArgumentParser
import Foundation
import OnceLedgerFormat
import OnceLedgerLog

/// An error a subcommand reports: what was wrong and what to do, and its exit code.
struct CommandFailure: Error, CustomStringConvertible {
    var exitCode: Int32
    var message: String
    /// A stable name for scripts (the `code` of `--json` errors, Spec/JSON.md): a
    /// `LedgerError` code, or `usage` / `operational` / `damaged` by exit code.
    var code: String
    /// The command already printed this failure inside its own `--json` result.
    var shownInJSON = false

    init(_ exitCode: Int32, _ message: String, code: String? = nil) {
        self.exitCode = exitCode
        self.message = message
        self.code = code ?? CommandFailure.code(forExitCode: exitCode)
    }
    var description: String { message }

    static func code(forExitCode exitCode: Int32) -> String {
        switch exitCode {
        case ExitCodes.usage: "usage"
        case ExitCodes.problemsLeft: "damaged"
        default: "operational"
        }
    }

    /// `{"code":…,"message":…,"exitCode":…}`: how `--json` reports a failure.
    var json: JSONValue {
        .object([("code", .string(code)), ("message", .string(message)), ("exitCode", .unsigned(UInt64(exitCode)))])
    }

    /// A library error, with its operator context (path, segment, offset, …) and a hint.
    init(_ error: LedgerError, hint: String? = nil, relativeTo directory: String? = nil) {
        var text = CommandFailure.describe(error, relativeTo: directory)
        if let hint { text += "\n" + hint }
        self.init(ExitCodes.code(for: error), text, code: error.code.rawValue)
    }

    /// `[code] message (path …, segment …, offset …, sequence …, checksums, errno, holder pid)`.
    /// A path inside `directory` is shown by its file name alone.
    static func describe(_ error: LedgerError, relativeTo directory: String? = nil) -> String {
        var text = error.message
        var context: [String] = []
        if var path = error.path {
            if let directory, path != directory {
                let prefix = Paths.join(directory, "")
                if path.hasPrefix(prefix) { path = String(path.dropFirst(prefix.count)) }
            }
            if path != directory { context.append("file \(path)") }
        }
        if let segment = error.segment { context.append("segment \(segment)") }
        if let offset = error.offset { context.append("offset \(offset)") }
        if let sequence = error.sequence { context.append("sequence \(sequence)") }
        if let expected = error.expectedChecksum { context.append("expected checksum \(hex32(expected))") }
        if let actual = error.actualChecksum { context.append("actual checksum \(hex32(actual))") }
        // The library's I/O messages already end in "(errno N)".
        if let errno = error.errno, !text.contains("(errno \(errno))") { context.append("errno \(errno)") }
        if let pid = error.holderPID { context.append("holder pid \(pid)") }
        if let limit = error.limit { context.append("limit \(limit)") }
        if !context.isEmpty { text += " (" + context.joined(separator: ", ") + ")" }
        return "[\(error.code)] " + text
    }
}

extension CommandFailure {
    /// Runs a subcommand body: a `CommandFailure` or `LedgerError` is printed on standard
    /// error as `Error: …` and becomes its exit code; anything else is an operational error.
    /// With `json`, the failure is also one JSON object on standard output (`json`), unless
    /// the command already put it in its own JSON result.
    static func reporting(json: Bool = false, _ body: () async throws -> Int32) async throws {
        let failure: CommandFailure
        do {
            let code = try await body()
            if code != 0 { throw ExitCode(code) }
            return
        } catch let error as CommandFailure {
            failure = error
        } catch let error as LedgerError {
            failure = CommandFailure(error)
        } catch let error as ExitCode {
            throw error
        } catch {
            failure = CommandFailure(ExitCodes.operational, "\(error)")
        }
        if json && !failure.shownInJSON { print(failure.json.rendered()) }
        printError(failure.message)
        throw ExitCode(failure.exitCode)
    }

    static func printError(_ message: String) {
        StandardError.write("Error: " + message + "\n")
    }
}
