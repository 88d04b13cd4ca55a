import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct ResolveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resolve", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger resolve is not implemented yet")
    }
}
