import Foundation

/// Standard error, written unbuffered: errors, notes and progress go here, so that the
/// standard output of `--json` stays pure JSON.
enum StandardError {
    static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
