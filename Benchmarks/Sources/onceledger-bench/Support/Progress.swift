import Foundation

/// Progress lines on standard error, so `--json` output stays one object.
struct Progress {
    var enabled: Bool
    let clock = MonotonicClock()
    func say(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("[\(Format.fixed(clock.elapsedSeconds, 1)) s] \(text)\n".utf8))
    }
}
