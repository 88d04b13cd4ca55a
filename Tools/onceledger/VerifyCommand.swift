import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger verify is not implemented yet")
    }
}
