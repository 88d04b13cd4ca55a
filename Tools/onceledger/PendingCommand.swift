import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct PendingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pending", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger pending is not implemented yet")
    }
}
