// Proves the inspection commands never print a hostile text's invisible or terminal-controlling
// characters as they are, in the names of the newer records (memo runs, steps and names, journal
// step names) and in keys: a right-to-left override U+202E (reorders a table on screen), a C1
// control U+009B (a terminal's CSI), and a format character above U+FFFF (U+E0001, LANGUAGE TAG).
// Before, only C0 controls and DEL were escaped, and `--json` output of a scalar above U+FFFF
// would have needed a negative count of padding zeros (a trap). The JSON lines are parsed back and
// give the exact texts. How: a real ledger written with the library, each command run with and
// without `--json`, every output searched for the raw scalars.
import Foundation
import OnceLedger
import Testing

@Suite struct HostileStringOutputTests {
    static let hostile: [Unicode.Scalar] = ["\u{202E}", "\u{9B}", "\u{E0001}"]
    static let run = "run\u{202E}\u{9B}\u{E0001}x"
    static let step = "step\u{202E}"
    static let name = "name\u{9B}31m"
    static let key = "key\u{202E}\u{E0001}"

    @Test func namesWithFormatAndC1CharactersAreEscapedEverywhere() async throws {
        let directory = try KillTestDirectory("hostile-strings")
        defer { directory.remove() }
        let ledger = try Ledger.open(directory: directory.path)
        try await ledger.once(IdempotencyKey(Self.key), as: String.self) { _ in "ok" }
        try await ledger.memo(run: Self.run, step: Self.step).put(Self.name, "value")
        let journal = try await ledger.journal(run: Self.run + "j")
        _ = try await journal.step(Self.step) { "output" }
        try ledger.close()

        for arguments in [["dump"], ["entries"], ["runs"], ["memo", Self.run], ["journal", Self.run + "j"], ["stat"], ["verify"]] {
            for json in [false, true] {
                let result = try CLI.run([arguments[0], directory.path] + arguments.dropFirst() + (json ? ["--json"] : []))
                #expect(result.exitCode == 0, "\(arguments) \(json): \(result.stdout) \(result.stderr)")
                if json, (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) == nil {
                    for line in result.stdout.split(separator: "\n") {
                        #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "\(arguments): \(line)")
                    }
                }
                // `journal --json` prints the export's lines (FORMAT §10.5), whose output member is the
                // recorded bytes themselves by design; it is checked as JSON only.
                guard !(json && arguments[0] == "journal") else { continue }
                let raw = result.stdout.unicodeScalars.filter { Self.hostile.contains($0) }
                #expect(raw.isEmpty, "\(arguments) json \(json) printed \(raw.map { String($0.value, radix: 16) }): \(result.stdout)")
            }
        }
        // The JSON gives the texts back exactly.
        let memo = try CLI.run(["memo", directory.path, Self.run, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(memo.stdout.split(separator: "\n")[0].utf8)) as? [String: Any])
        #expect(object["run"] as? String == Self.run && object["step"] as? String == Self.step && object["name"] as? String == Self.name)
        let entries = try CLI.run(["entries", directory.path, "--json"])
        #expect(entries.stdout.split(separator: "\n").contains { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["key"] as? String == Self.key
        }, "\(entries.stdout)")
    }
}
