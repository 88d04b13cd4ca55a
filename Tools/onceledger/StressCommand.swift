import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct StressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stress", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger stress is not implemented yet")
    }
}
