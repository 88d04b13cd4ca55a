import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct EntriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "entries", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger entries is not implemented yet")
    }
}
