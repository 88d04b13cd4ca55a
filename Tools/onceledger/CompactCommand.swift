import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct CompactCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compact", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger compact is not implemented yet")
    }
}
