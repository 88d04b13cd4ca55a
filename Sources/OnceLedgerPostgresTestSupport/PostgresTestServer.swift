import COnceSupport
import Foundation
import Synchronization

/// A PostgreSQL server for tests and benchmarks: the one `ONCELEDGER_POSTGRES_URL` names, or
/// else a throw-away cluster this process starts — `initdb` into a temporary directory, a
/// Unix socket in that directory, no network (`listen_addresses=''`) — and stops and removes
/// when it ends (`stop()`, or at exit for `shared()`).
///
/// PostgreSQL refuses to run as root; when this process is root (CI is) `initdb` and
/// `pg_ctl` run as the `postgres` user through `runuser`, in a directory that user owns.
/// The server binaries are found through `ONCELEDGER_POSTGRES_BINDIR`, `pg_config --bindir`,
/// or `/usr/lib/postgresql/*/bin` (the newest); `.ci/run` installs them when missing.
public final class PostgresTestServer: Sendable {
    /// A URL for `PostgresStore.connect(url:)`: `postgres://USER@/DATABASE?host=DIR` for the
    /// throw-away cluster (libpq's spelling of a Unix socket directory).
    public let url: String
    /// The cluster's directory (data, socket, log), nil for a server named by the URL.
    public let directory: String?
    /// The directory holding the Unix socket `.s.PGSQL.5432`, nil for a server named by the URL.
    public var socketDirectory: String? { directory }
    /// The socket's path, nil for a server named by the URL.
    public var socketPath: String? { directory.map { "\($0)/.s.PGSQL.5432" } }
    /// The superuser the cluster was created with.
    public static let username = "onceledger"
    /// The database a fresh cluster has.
    public static let database = "postgres"

    private let binDirectory: String?

    private init(url: String, directory: String?, binDirectory: String?) {
        self.url = url
        self.directory = directory
        self.binDirectory = binDirectory
    }

    /// Why a server cannot be had.
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    // MARK: The shared server

    /// Whether the PostgreSQL tests should run: a URL is given, the server binaries are
    /// installed, or this is CI (where missing binaries then fail the tests, never skip them).
    public static var shouldRun: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["ONCELEDGER_POSTGRES_URL"].map { !$0.isEmpty } == true
            || findBinDirectory() != nil
            || environment["CI"].map { !$0.isEmpty } == true
    }

    /// Why `shouldRun` is false, for a test's skip message.
    public static let skipReason =
        "PostgreSQL is not installed (no initdb; apt-get install postgresql) and ONCELEDGER_POSTGRES_URL is not set"

    private static let sharedState = Mutex<Result<PostgresTestServer, Unavailable>?>(nil)

    /// The server this process's tests share: the URL's, or a throw-away cluster started on
    /// first use and stopped and removed when the process exits. Tests keep apart by using
    /// schemas of their own. Throws `Unavailable` (saying what to install) if there is none.
    public static func shared() throws -> PostgresTestServer {
        let result = sharedState.withLock { state -> Result<PostgresTestServer, Unavailable> in
            if let state { return state }
            let made: Result<PostgresTestServer, Unavailable>
            do {
                if let url = ProcessInfo.processInfo.environment["ONCELEDGER_POSTGRES_URL"], !url.isEmpty {
                    made = .success(PostgresTestServer(url: url, directory: nil, binDirectory: nil))
                } else {
                    reapAbandonedClusters()
                    // Every suite of a test process runs at once on this one server, each test
                    // with stores of its own (a pool and a listener each, worker processes too):
                    // the default 100 connections ran out ("too many clients") in a full run.
                    let server = try start(settings: ["max_connections=400"])
                    made = .success(server)
                    atexit { PostgresTestServer.stopShared() }
                }
            } catch let error as Unavailable {
                made = .failure(error)
            } catch {
                made = .failure(Unavailable(description: "\(error)"))
            }
            state = made
            return made
        }
        return try result.get()
    }

    private static func stopShared() {
        let server = sharedState.withLock { state -> PostgresTestServer? in
            guard case .success(let server) = state else { return nil }
            return server
        }
        server?.stop()
    }

    // MARK: A cluster of one's own

    /// Starts a throw-away cluster in a new temporary directory; `stop()` stops and removes
    /// it. `settings` are extra server settings (`name=value`, passed as `-c`).
    public static func start(settings: [String] = []) throws -> PostgresTestServer {
        guard let bin = findBinDirectory() else {
            throw Unavailable(description: "PostgreSQL's server binaries (initdb, pg_ctl) were not found in ONCELEDGER_POSTGRES_BINDIR, `pg_config --bindir` or /usr/lib/postgresql/*/bin: install them (apt-get install postgresql; .ci/run does) or set ONCELEDGER_POSTGRES_URL to a server's URL")
        }
        var template = Array("/tmp/onceledger-pg-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Unavailable(description: "could not create a temporary directory in /tmp (errno \(errno))")
        }
        let directory = String(cString: made)
        // Who started it: a later process stops and removes it if this one dies without
        // doing so (a crashed test run), `reapAbandonedClusters()`.
        _ = FileManager.default.createFile(atPath: "\(directory)/owner.pid", contents: Array("\(getpid())".utf8).withUnsafeBytes { Data($0) })
        let asRoot = geteuid() == 0
        if asRoot {
            guard let user = getpwnam("postgres") else {
                try? FileManager.default.removeItem(atPath: directory)
                throw Unavailable(description: "running as root, and there is no `postgres` user to run the server as (PostgreSQL refuses root): install the postgresql package, which creates it")
            }
            if chown(directory, user.pointee.pw_uid, user.pointee.pw_gid) != 0 {
                try? FileManager.default.removeItem(atPath: directory)
                throw Unavailable(description: "could not give \(directory) to the postgres user (errno \(errno))")
            }
        }
        let server = PostgresTestServer(
            url: "postgres://\(username)@/\(database)?host=\(directory)", directory: directory, binDirectory: bin)
        do {
            try server.runServerTool("initdb", ["-D", "\(directory)/data", "-A", "trust", "-U", username,
                                                "--no-locale", "-E", "UTF8", "--no-sync"])
            var options = "-k \(directory) -c listen_addresses=''"
            for setting in settings { options += " -c \(setting)" }
            try server.runServerTool("pg_ctl", ["-D", "\(directory)/data", "-o", options, "-l", "\(directory)/server.log",
                                                 "-w", "-t", "60", "start"])
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    /// Stops and removes the throw-away clusters in /tmp whose starting process is gone (it
    /// crashed, or was killed, before its exit handler ran). Clusters of live processes are
    /// left alone.
    public static func reapAbandonedClusters() {
        guard let bin = findBinDirectory() else { return }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for name in names where name.hasPrefix("onceledger-pg-") {
            let directory = "/tmp/\(name)"
            guard let text = try? String(contentsOfFile: "\(directory)/owner.pid", encoding: .utf8),
                  let owner = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), owner > 0
            else { continue }
            if kill(owner, 0) == 0 || errno != ESRCH { continue }
            PostgresTestServer(url: "", directory: directory, binDirectory: bin).stop()
        }
    }

    /// Stops the server fast (open connections are dropped) and starts it again on the same
    /// data: what a server restart does to the clients. Only for a cluster this process started.
    public func restart() throws {
        guard let directory else { throw Unavailable(description: "the server named by ONCELEDGER_POSTGRES_URL cannot be restarted from here") }
        try runServerTool("pg_ctl", ["-D", "\(directory)/data", "-m", "fast", "-w", "-t", "60", "restart"])
    }

    /// Stops the cluster (immediately) and removes its directory. Does nothing for a server
    /// named by the URL, or a second time.
    public func stop() {
        guard let directory else { return }
        if FileManager.default.fileExists(atPath: "\(directory)/data/postmaster.pid") {
            try? runServerTool("pg_ctl", ["-D", "\(directory)/data", "-m", "immediate", "-w", "stop"])
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The server's log (for a failing test's message); empty for a server named by the URL.
    public func serverLog() -> String {
        guard let directory else { return "" }
        return (try? String(contentsOfFile: "\(directory)/server.log", encoding: .utf8)) ?? ""
    }

    // MARK: Running the server's tools

    /// Runs `tool` of the server's bin directory (as the postgres user when this process is
    /// root), in the cluster's directory; throws `Unavailable` with its output if it fails.
    private func runServerTool(_ tool: String, _ arguments: [String]) throws {
        guard let binDirectory else { return }
        let path = "\(binDirectory)/\(tool)"
        var argv: [String]
        if geteuid() == 0 {
            let runuser = FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") ? "/usr/sbin/runuser" : "/sbin/runuser"
            argv = [runuser, "-u", "postgres", "--", path] + arguments
        } else {
            argv = [path] + arguments
        }
        // Output goes to a file, not a pipe: the server pg_ctl starts inherits the tool's
        // descriptors, so a pipe would never reach its end while the server runs.
        let outputPath = "\(directory ?? "/tmp")/\(tool).out"
        let status = try Self.spawnAndWait(argv, output: outputPath)
        if status != 0 {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw Unavailable(description: "\(tool) \(arguments.joined(separator: " ")) failed (status \(status)): \(text)\(serverLog())")
        }
    }

    /// posix_spawn and waitpid (Foundation's `Process` can miss the exit of `runuser`):
    /// stdin from /dev/null, stdout and stderr to `output`; returns the exit status.
    static func spawnAndWait(_ argv: [String], output: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else is inherited. This process's other descriptors include pipes other
        // threads are reading to their end (a test's captured CLI output, `Process`'s pipes
        // are not close-on-exec), and the server pg_ctl starts would keep their write ends
        // open for as long as it runs: those reads, and the tests waiting on them, hung.
        _ = ol_spawn_actions_close_from(&actions, 3)
        // No signal blocked, each at its default action (the spawning thread may block some).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        _ = ol_spawnattr_default_signals(&attributes)
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, &cArguments, environ)
        if spawned != 0 {
            throw Unavailable(description: "could not run \(argv[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { throw Unavailable(description: "waitpid for \(argv[0]) failed (errno \(errno))") }
        }
        // WIFEXITED / WEXITSTATUS, spelled out (the macros are not imported).
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Where `initdb` and `pg_ctl` are, or nil: found once per process.
    static func findBinDirectory() -> String? { binDirectory }

    private static let binDirectory: String? = searchBinDirectory()

    private static func searchBinDirectory() -> String? {
        let manager = FileManager.default
        func has(_ directory: String) -> Bool {
            manager.isExecutableFile(atPath: "\(directory)/initdb") && manager.isExecutableFile(atPath: "\(directory)/pg_ctl")
        }
        if let given = ProcessInfo.processInfo.environment["ONCELEDGER_POSTGRES_BINDIR"], has(given) { return given }
        for pgConfig in ["/usr/bin/pg_config", "/usr/local/bin/pg_config"] where manager.isExecutableFile(atPath: pgConfig) {
            // Its answer goes to a file, not a pipe: a pipe's write end is inherited by every
            // process this one starts meanwhile (another test's `postgres`, which lives on),
            // and reading to the end of the pipe then waited for that server to exit — a
            // whole test run hung there. Started like initdb and pg_ctl (`spawnAndWait`), not
            // with `Process`, whose `waitUntilExit` can miss an exit.
            let answer = NSTemporaryDirectory() + "onceledger-pg_config-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
            defer { try? manager.removeItem(atPath: answer) }
            if let status = try? spawnAndWait([pgConfig, "--bindir"], output: answer), status == 0 {
                let data = manager.contents(atPath: answer) ?? Data()
                let directory = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if has(directory) { return directory }
            }
        }
        let versions = ((try? manager.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? [])
            .compactMap(Int.init).sorted(by: >)
        for version in versions where has("/usr/lib/postgresql/\(version)/bin") {
            return "/usr/lib/postgresql/\(version)/bin"
        }
        return nil
    }
}
