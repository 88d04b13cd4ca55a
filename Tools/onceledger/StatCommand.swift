import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct StatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stat", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger stat is not implemented yet")
    }
}
