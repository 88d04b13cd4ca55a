import ArgumentParser
import Foundation

/// Usage errors the top-level `main` reports itself (exit 16), printed the way
/// ArgumentParser prints its own: `Error: …`, the subcommand's usage, a pointer to its help.
enum UsageFailure {
    /// Whether `--json` was given (before a `--` that ends the options).
    static func wantsJSON(_ arguments: [String]) -> Bool {
        arguments.prefix { $0 != "--" }.contains("--json")
    }

    /// Prints the error (and, with `json`, its JSON object on standard output), exits 16.
    static func exit(_ message: String, command: ParsableCommand.Type, json: Bool) -> Never {
        if json { writeJSON(message) }
        let name = command == OnceLedgerCommand.self ? "onceledger" : "onceledger \(command._commandName)"
        StandardError.write("""
            Error: \(message)
            Usage: \(OnceLedgerCommand.usageString(for: command))
              See '\(name) --help' for more information.

            """)
        Foundation.exit(ExitCodes.usage)
    }

    /// `{"code":"usage","message":…,"exitCode":16}` on standard output (Spec/JSON.md).
    static func writeJSON(_ message: String) {
        print(CommandFailure(ExitCodes.usage, message).json.rendered())
    }

    /// The first command-line argument (1-based, after the program name) whose bytes are
    /// not valid UTF-8, read from the raw `argv` (`CommandLine.arguments` repairs them).
    static func firstInvalidUTF8Argument() -> (index: Int, bytes: [UInt8])? {
        let argv = CommandLine.unsafeArgv
        for index in 1..<Int(CommandLine.argc) {
            guard let pointer = argv[index] else { continue }
            let bytes = Array(UnsafeBufferPointer(start: pointer, count: strlen(pointer))).map { UInt8(bitPattern: $0) }
            if String(validating: bytes, as: UTF8.self) == nil { return (index: index, bytes: bytes) }
        }
        return nil
    }

    /// Up to 32 bytes as space-separated hex.
    static func hexPreview(_ bytes: [UInt8]) -> String {
        let shown = bytes.prefix(32).map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }
        return shown.joined(separator: " ") + (bytes.count > 32 ? " … (\(bytes.count) bytes)" : "")
    }
}
