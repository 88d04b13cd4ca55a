import ArgumentParser
import Foundation
import OnceLedgerFormat

/// An error a subcommand reports: what was wrong and what to do, and its exit code.
struct CommandFailure: Error, CustomStringConvertible {
    var exitCode: Int32
    var message: String
    init(_ exitCode: Int32, _ message: String) {
        self.exitCode = exitCode
        self.message = message
    }
    var description: String { message }

    /// A library error, with its operator context (path, segment, offset, …) and a hint.
    init(_ error: LedgerError, hint: String? = nil, relativeTo directory: String? = nil) {
        var text = CommandFailure.describe(error, relativeTo: directory)
        if let hint { text += "\n" + hint }
        self.init(ExitCodes.code(for: error), text)
    }

    /// `[code] message (path …, segment …, offset …, sequence …, checksums, errno, holder pid)`.
    /// A path inside `directory` is shown by its file name alone.
    static func describe(_ error: LedgerError, relativeTo directory: String? = nil) -> String {
        var text = error.message
        var context: [String] = []
        if var path = error.path {
            if let directory, path != directory {
                let prefix = directory.hasSuffix("/") ? directory : directory + "/"
                if path.hasPrefix(prefix) { path = String(path.dropFirst(prefix.count)) }
            }
            if path != directory { context.append("file \(path)") }
        }
        if let segment = error.segment { context.append("segment \(segment)") }
        if let offset = error.offset { context.append("offset \(offset)") }
        if let sequence = error.sequence { context.append("sequence \(sequence)") }
        if let expected = error.expectedChecksum { context.append("expected checksum \(hex32(expected))") }
        if let actual = error.actualChecksum { context.append("actual checksum \(hex32(actual))") }
        if let errno = error.errno { context.append("errno \(errno)") }
        if let pid = error.holderPID { context.append("holder pid \(pid)") }
        if let limit = error.limit { context.append("limit \(limit)") }
        if !context.isEmpty { text += " (" + context.joined(separator: ", ") + ")" }
        return "[\(error.code)] " + text
    }
}

extension CommandFailure {
    /// Runs a subcommand body: a `CommandFailure` or `LedgerError` is printed on standard
    /// error as `Error: …` and becomes its exit code; anything else is an operational error.
    static func reporting(_ body: () async throws -> Int32) async throws {
        let code: Int32
        do {
            code = try await body()
        } catch let failure as CommandFailure {
            printError(failure.message)
            code = failure.exitCode
        } catch let error as LedgerError {
            let failure = CommandFailure(error)
            printError(failure.message)
            code = failure.exitCode
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("\(error)")
            code = ExitCodes.operational
        }
        if code != 0 { throw ExitCode(code) }
    }

    static func printError(_ message: String) {
        StandardError.write("Error: " + message + "\n")
    }
}
