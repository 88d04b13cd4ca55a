// Proves that the `onceledger` commands report wrong input the way README "Exit codes and
// errors" and Spec/JSON.md say: with `--json` a failure is one {code, message, exitCode} JSON
// object on standard output (text on standard error as before); a negative number is refused
// as negative (not as a "missing value"); `help` with an unknown command exits 16; an argument
// that is not valid UTF-8 is refused (exit 16) instead of being recorded with U+FFFD; `dump
// --key` checks the key's length; `--receipt-hex` tells non-hex digits from an odd count; a
// usage error found while a subcommand runs (demo, salvage) prints that subcommand's usage.
// Each test runs the built executable on a copy of a golden ledger (or a missing path) and
// compares the whole standard output, standard error and exit code, with the temporary path
// replaced by `$DIR`.
import Foundation
import Testing

/// A copy of `Spec/vectors/<vector>` as `<fresh temp>/<vector>`; `remove` deletes it.
private struct VectorCopy {
    let path: String

    init(_ vector: String) throws {
        let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Spec/vectors").path
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        path = parent.appendingPathComponent(vector).path
        try FileManager.default.copyItem(atPath: vectors + "/" + vector, toPath: path)
    }

    func remove() { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }

    func files() -> [String: Data] {
        var result: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            result[name] = FileManager.default.contents(atPath: path + "/" + name)
        }
        return result
    }

    /// Runs `onceledger arguments…` with `$DIR` standing for this copy, in and out.
    func run(_ arguments: [String]) throws -> CLI.Result {
        var result = try CLI.run(arguments.map { $0.replacingOccurrences(of: "$DIR", with: path) })
        result.stdout = result.stdout.replacingOccurrences(of: path, with: "$DIR")
        result.stderr = result.stderr.replacingOccurrences(of: path, with: "$DIR")
        return result
    }

    /// Runs `onceledger` through `/bin/sh`, so that `script` can build arguments from raw bytes
    /// with printf (`Process` takes only valid Swift strings). `$ONCELEDGER` and `$DIR` are set.
    func runShell(_ script: String) throws -> CLI.Result {
        var environment = ProcessInfo.processInfo.environment
        environment["ONCELEDGER"] = CLI.executableURL.path
        environment["DIR"] = path
        var result = try CLI.runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", script], environment: environment)
        result.stdout = result.stdout.replacingOccurrences(of: path, with: "$DIR")
        result.stderr = result.stderr.replacingOccurrences(of: path, with: "$DIR")
        return result
    }
}

private func jsonObject(_ text: Substring, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? [String: Any], sourceLocation: sourceLocation)
}

private let resolveUsage = """
    Usage: onceledger resolve <dir> <key> [--done] [--absent] [--correct] [--receipt <receipt>] [--receipt-raw <receipt-raw>] [--receipt-hex <receipt-hex>] --reason <reason> [--actor <actor>] [--schema <name>]
      See 'onceledger resolve --help' for more information.

    """

private let stressUsage = """
    Usage: onceledger stress <dir> [--effects <effects>] [--concurrency <concurrency>] [--keys <keys>] [--seed <seed>] [--segment-bytes <segment-bytes>] [--compact-every <compact-every>] [--compact-after-bytes <compact-after-bytes>] [--fail-percent <fail-percent>] [--receipt-bytes-max <receipt-bytes-max>] [--adopt-directory]
      See 'onceledger stress --help' for more information.

    """

private let dumpUsage = """
    Usage: onceledger dump <dir> [--json] [--key <key>] [--kind <kind> ...] [--since <seq>] [--live]
      See 'onceledger dump --help' for more information.

    """

@Suite struct CLIErrorTests {
    // MARK: --json

    @Test func failuresUnderJSONAreOneJSONObjectOnStandardOutput() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        let message = "$DIR/nodir: no such directory. Pass the ledger's directory (the one holding wal-*.seg files)."
        for arguments in [["verify"], ["stat"], ["dump"], ["pending"], ["entries"], ["runs"], ["memo", "r"], ["journal", "r"]] {
            let command = arguments[0]
            let result = try ledger.run([command, "$DIR/nodir"] + arguments.dropFirst() + ["--json"])
            #expect(result.exitCode == 8, "\(command)")
            #expect(result.stdout == #"{"code":"not-a-ledger","message":"\#(message)","exitCode":8}"# + "\n", "\(command)")
            #expect(result.stderr == "Error: \(message)\n", "\(command)")
        }
        // Without --json, standard output stays empty.
        let text = try ledger.run(["stat", "$DIR/nodir"])
        #expect(text.exitCode == 8 && text.stdout == "" && text.stderr == "Error: \(message)\n")
    }

    @Test func aUsageErrorUnderJSONIsAJSONObjectToo() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        let result = try ledger.run(["entries", "$DIR", "--json", "--state", "finished"])
        #expect(result.exitCode == 16)
        #expect(result.stdout == """
            {"code":"usage","message":"unknown state \\"finished\\"; use done, pending-unknown or absent","exitCode":16}

            """)
        #expect(result.stderr == """
            Error: unknown state "finished"; use done, pending-unknown or absent
            Usage: onceledger entries <dir> [--json] [--state <state>] [--live] [--schema <name>]
              See 'onceledger entries --help' for more information.

            """)
    }

    @Test func aDamagedLedgerUnderJSONKeepsOneDocumentPerOutput() throws {
        let ledger = try VectorCopy("ledger-sealed-corrupt")
        defer { ledger.remove() }
        // stat: one object, the failure as its last member `error`.
        let stat = try ledger.run(["stat", "$DIR", "--json"])
        #expect(stat.exitCode == 4)
        let object = try jsonObject(Substring(stat.stdout))
        let error = try #require(object["error"] as? [String: Any])
        #expect(error["code"] as? String == "corrupt-record")
        #expect(error["exitCode"] as? Int == 4)
        #expect((error["message"] as? String)?.hasPrefix("the ledger is damaged, so its entries are not shown: [corrupt-record]") == true)
        #expect(stat.stderr == "Error: \(error["message"] as? String ?? "")\n")
        // dump: JSON Lines, the failure is the last line (the only one with exitCode).
        let dump = try ledger.run(["dump", "$DIR", "--json"])
        #expect(dump.exitCode == 4)
        let lines = try dump.stdout.split(separator: "\n").map { try jsonObject($0) }
        #expect(lines.count >= 2)
        #expect(lines.dropLast().allSatisfy { $0["exitCode"] == nil && $0["source"] as? String == "log" })
        #expect(lines.last?["code"] as? String == "corrupt-record")
        #expect(lines.last?["exitCode"] as? Int == 4)
        // verify's report names the problem itself: no second object.
        let verify = try ledger.run(["verify", "$DIR", "--json"])
        #expect(verify.exitCode == 4)
        #expect(try jsonObject(Substring(verify.stdout))["exitCode"] as? Int == 4)
    }

    // MARK: Numbers, help, encodings

    @Test func negativeNumbersAreRefusedAsNegative() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        let before = ledger.files()
        let cases: [([String], String)] = [
            (["stress", "$DIR", "--effects", "-1"],
             "Error: --effects must be a non-negative integer (0, 1, 2, …); it is -1\n" + stressUsage),
            (["stress", "$DIR", "--compact-every", "-3"],
             "Error: --compact-every must be a non-negative integer (0 never, N every N acknowledged calls); it is -3\n" + stressUsage),
            (["stress", "$DIR", "--compact-after-bytes", "1000"],
             "Error: --compact-after-bytes must be 0 (never) or at least 65536; it is 1000\n" + stressUsage),
            (["stress", "$DIR", "--seed", "-5"], """
                Error: The value '-5' is invalid for '--seed <seed>': it must be a non-negative integer (0, 1, 2, …)
                Help:  --seed <seed>  Seed of the key and failure choices (default: random; printed on standard error).

                """ + stressUsage),
            (["dump", "$DIR", "--since", "-1"], """
                Error: The value '-1' is invalid for '--since <seq>': it must be a non-negative integer (0, 1, 2, …)
                Help:  --since <seq>  Only records with a sequence number of at least SEQ (snapshot items, which have none, are left out).

                """ + dumpUsage),
        ]
        for (arguments, expected) in cases {
            let result = try ledger.run(arguments)
            #expect(result.exitCode == 16, "\(arguments)")
            #expect(result.stdout == "", "\(arguments)")
            #expect(result.stderr == expected, "\(arguments)")
        }
        // The positive values are still taken.
        let since = try ledger.run(["dump", "$DIR", "--since", "5", "--json"])
        #expect(since.exitCode == 0 && since.stdout.split(separator: "\n").count == 1)
        #expect(ledger.files() == before)
    }

    @Test func helpForAnUnknownCommandIsAUsageError() throws {
        let result = try CLI.run(["help", "nosuch"])
        #expect(result.exitCode == 16)
        #expect(result.stdout == "")
        #expect(result.stderr == """
            Error: unknown command 'nosuch'; the commands are demo, verify, dump, stat, pending, entries, runs, memo, resolve, forget, compact, sweep, salvage, journal, journal-export, journal-truncate, stress
            Usage: onceledger <subcommand>
              See 'onceledger --help' for more information.

            """)
        let deeper = try CLI.run(["help", "resolve", "nosuch"])
        #expect(deeper.exitCode == 16)
        #expect(deeper.stderr == "Error: unknown command 'nosuch'; 'resolve' has no subcommands\n" + resolveUsage)
        let known = try CLI.run(["help", "resolve"])
        #expect(known.exitCode == 0 && known.stdout.contains("USAGE: onceledger resolve <dir> <key>"))
    }

    @Test func argumentsThatAreNotUTF8AreRefused() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        let before = ledger.files()
        // \377 (0xff) never occurs in UTF-8; \303( is a lead byte without its continuation.
        let cases: [(String, String)] = [
            (#""$ONCELEDGER" resolve "$DIR" "$(printf 'order-\377')" --absent --reason checked"#,
             "Error: argument 3 is not valid UTF-8 (bytes 6f 72 64 65 72 2d ff); keys, reasons, actors, receipts and paths must be UTF-8 text. Nothing was read or written.\n" + resolveUsage),
            (#""$ONCELEDGER" resolve "$DIR" order-43 --absent --reason "$(printf 'caf\303(')""#,
             "Error: argument 6 is not valid UTF-8 (bytes 63 61 66 c3 28); keys, reasons, actors, receipts and paths must be UTF-8 text. Nothing was read or written.\n" + resolveUsage),
            (#""$ONCELEDGER" forget "$DIR" k --reason r --actor "$(printf '\377')" --i-understand-this-allows-a-rerun"#,
             """
                Error: argument 7 is not valid UTF-8 (bytes ff); keys, reasons, actors, receipts and paths must be UTF-8 text. Nothing was read or written.
                Usage: onceledger forget <dir> <key> --reason <reason> [--actor <actor>] [--i-understand-this-allows-a-rerun] [--schema <name>]
                  See 'onceledger forget --help' for more information.

                """),
        ]
        for (script, expected) in cases {
            let result = try ledger.runShell(script)
            #expect(result.exitCode == 16, "\(script)")
            #expect(result.stdout == "", "\(script)")
            #expect(result.stderr == expected, "\(script)")
        }
        #expect(ledger.files() == before, "nothing was written (not even LOCK)")
    }

    @Test func dumpKeyIsCheckedLikeEveryKey() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        for (key, bytes) in [("", 0), (String(repeating: "k", count: 1025), 1025)] {
            let result = try ledger.run(["dump", "$DIR", "--key", key])
            #expect(result.exitCode == 16)
            #expect(result.stdout == "")
            #expect(result.stderr == "Error: --key must be 1 to 1024 bytes of UTF-8 (it is \(bytes)), as every idempotency key is\n" + dumpUsage)
        }
        let longest = try ledger.run(["dump", "$DIR", "--key", String(repeating: "k", count: 1024), "--json"])
        #expect(longest.exitCode == 0 && longest.stdout == "")
    }

    @Test func receiptHexSaysWhatIsWrong() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        let cases: [(String, String)] = [
            ("zz", #"Error: --receipt-hex "zz" is not hexadecimal ("z" is not a hex digit); give the bytes as hex digits 0-9 and a-f, two per byte, e.g. 6d73672d31"#),
            ("6d+7", #"Error: --receipt-hex "6d+7" is not hexadecimal ("+" is not a hex digit); give the bytes as hex digits 0-9 and a-f, two per byte, e.g. 6d73672d31"#),
            ("abc", #"Error: --receipt-hex must have two hex digits per byte; "abc" has 3, an odd number"#),
        ]
        for (hex, expected) in cases {
            let result = try ledger.run(["resolve", "$DIR", "order-43", "--done", "--receipt-hex", hex, "--reason", "checked"])
            #expect(result.exitCode == 16, "\(hex)")
            #expect(result.stderr == expected + "\n" + resolveUsage, "\(hex)")
        }
    }

    // MARK: Usage errors found while running

    @Test func demoAndSalvagePrintTheirOwnUsage() throws {
        let ledger = try VectorCopy("ledger-clean")
        defer { ledger.remove() }
        let demo = try ledger.run(["demo", "$DIR"])
        #expect(demo.exitCode == 16)
        #expect(demo.stderr.hasSuffix("""
            Usage: onceledger demo [<dir>]
              See 'onceledger demo --help' for more information.

            """), "\(demo.stderr)")
        let salvage = try ledger.run(["salvage", "$DIR", "--to", "$DIR/inside"])
        #expect(salvage.exitCode == 16)
        #expect(salvage.stderr == """
            Error: --to must not be inside DIR (salvage never changes DIR)
            Usage: onceledger salvage <dir> --to <newdir> [--trust-damaged-snapshot] [--json]
              See 'onceledger salvage --help' for more information.

            """)
    }
}
