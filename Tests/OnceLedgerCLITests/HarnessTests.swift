// Proves the CLI harness finds and runs the built executable: `--help` lists every subcommand.
import Testing

@Suite struct HarnessTests {
    @Test func helpListsSubcommands() throws {
        let result = try CLI.run(["--help"])
        #expect(result.exitCode == 0)
        for name in ["verify", "dump", "stat", "pending", "entries", "resolve", "forget", "salvage", "stress", "demo"] {
            #expect(result.stdout.contains(name), "missing \(name) in help")
        }
    }
}
