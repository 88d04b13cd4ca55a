import Foundation

/// Output written with `write(2)`: no stdio buffer for SIGKILL to lose, and a short
/// line is one atomic write on a pipe even when several tasks print at once. Used by
/// `stress` (its `ack` lines) and `demo-child`.
enum UnbufferedOutput {
    static func line(_ text: String) { write(fd: STDOUT_FILENO, text) }
    static func error(_ text: String) { write(fd: STDERR_FILENO, text + "\n") }
    static func progress(_ text: String) { write(fd: STDERR_FILENO, text) }

    private static func write(fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var done = 0
            while done < raw.count {
                let count = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if count > 0 {
                    done += count
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }
}
