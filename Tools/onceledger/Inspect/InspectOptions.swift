import ArgumentParser

/// The arguments every read-only inspection command shares.
struct InspectOptions: ParsableArguments {
    @Argument(help: "The ledger directory (the one holding wal-*.seg segment files).")
    var dir: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard !dir.isEmpty else { throw ValidationError("the ledger directory must not be empty") }
    }
}
