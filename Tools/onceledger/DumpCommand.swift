import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct DumpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger dump is not implemented yet")
    }
}
