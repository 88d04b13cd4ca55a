import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct SalvageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "salvage", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger salvage is not implemented yet")
    }
}
