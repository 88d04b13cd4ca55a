import OnceLedgerFormat
import PostgresNIO

/// A PostgreSQL connection URL, parsed the way libpq reads one:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?host=/socket/dir&sslmode=disable|prefer|require]`
/// (`postgresql://` too). A `host` parameter that is a path (or a host part that is a
/// percent-encoded path) names the directory of a Unix socket, `.s.PGSQL.PORT` inside it.
/// Without a user name the URL is refused: the store never guesses whom to log in as.
/// With TLS the server's certificate and host name are always verified (as libpq's
/// `verify-full`; libpq's `prefer` and `require` do not verify): `Spec/POSTGRES.md` §1.
public struct PostgresURL: Sendable, Hashable {
    public enum TLSMode: String, Sendable, Hashable {
        case disable, prefer, require
    }

    public var host: String?
    public var socketDirectory: String?
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String?
    public var tls: TLSMode

    /// Parses `url`; throws `.invalidArgument` saying what is wrong (the password is never
    /// repeated in a message).
    public init(_ url: String) throws {
        func invalid(_ why: String) -> LedgerError {
            LedgerError(.invalidArgument,
                        "the PostgreSQL URL is not usable: \(why). Write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or postgres://USER@/DATABASE?host=/socket/directory for a Unix socket")
        }
        if url.utf8.contains(0) { throw invalid("it contains a NUL character") }
        var rest = Substring(url)
        if rest.hasPrefix("postgres://") { rest = rest.dropFirst("postgres://".count) }
        else if rest.hasPrefix("postgresql://") { rest = rest.dropFirst("postgresql://".count) }
        else { throw invalid("it does not start with postgres:// or postgresql://") }

        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var authority = rest
        var userInfo: Substring?
        if let at = authority.lastIndex(of: "@") {
            userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
        }
        var user: String?
        var password: String?
        if let userInfo {
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], invalid)
                password = try Self.decode(userInfo[userInfo.index(after: colon)...], invalid)
            } else {
                user = try Self.decode(userInfo, invalid)
            }
        }
        var host: String?
        var port = 5432
        if !authority.isEmpty {
            var hostPart = authority
            if let colon = authority.lastIndex(of: ":"), !authority.hasPrefix("[") || authority[..<colon].hasSuffix("]") {
                guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else {
                    throw invalid("the port \"\(authority[authority.index(after: colon)...])\" is not a number from 1 to 65535")
                }
                port = parsed
                hostPart = authority[..<colon]
            }
            if hostPart.hasPrefix("["), hostPart.hasSuffix("]") { hostPart = hostPart.dropFirst().dropLast() }
            host = try Self.decode(hostPart, invalid)
        }
        var socketDirectory: String?
        if let decodedHost = host, decodedHost.hasPrefix("/") {
            socketDirectory = decodedHost
            host = nil
        }
        var tls = TLSMode.prefer
        for parameter in query.split(separator: "&") where !parameter.isEmpty {
            let parts = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Self.decode(parts[0], invalid)
            let value = parts.count > 1 ? try Self.decode(parts[1], invalid) : ""
            switch name {
            case "host":
                if value.hasPrefix("/") { socketDirectory = value; host = nil } else { host = value }
            case "port":
                guard let parsed = Int(value), (1...65535).contains(parsed) else {
                    throw invalid("the port \"\(value)\" is not a number from 1 to 65535")
                }
                port = parsed
            case "user": user = value
            case "password": password = value
            case "dbname": path = Substring(value)
            case "sslmode":
                switch value {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw invalid("sslmode \"\(value)\" is not one of disable, prefer, require")
                }
            case "application_name", "connect_timeout":
                break
            default:
                throw invalid("the parameter \"\(name)\" is not supported (host, port, user, password, dbname, sslmode are)")
            }
        }
        guard let user, !user.isEmpty else { throw invalid("it names no user") }
        if host == nil && socketDirectory == nil { throw invalid("it names no host and no socket directory") }
        self.host = host
        self.socketDirectory = socketDirectory
        self.port = port
        self.username = user
        self.password = password
        self.database = path.isEmpty ? nil : try Self.decode(path, invalid)
        self.tls = socketDirectory != nil ? .disable : tls
    }

    /// The URL without its password, for messages.
    public var redacted: String {
        let userPart = password == nil ? username : "\(username):***"
        let where_ = socketDirectory.map { "@/\(database ?? "")?host=\($0)" } ?? "@\(host ?? ""):\(port)/\(database ?? "")"
        return "postgres://\(userPart)\(where_)"
    }

    /// What postgres-nio connects with (throws if a TLS context cannot be made).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let socketDirectory {
            return PostgresConnection.Configuration(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)",
                                                    username: username, password: password, database: database)
        }
        let tlsSetting: PostgresConnection.Configuration.TLS = switch tls {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        return PostgresConnection.Configuration(host: host ?? "localhost", port: port, username: username,
                                                password: password, database: database, tls: tlsSetting)
    }

    private static func decode(_ text: Substring, _ invalid: (String) -> LedgerError) throws -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%") {
                // Two hex digits (`UInt8(_:radix:)` alone would take "+f" or "-0").
                func digit(_ byte: UInt8) -> UInt8? {
                    switch byte {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
                    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
                    default: nil
                    }
                }
                guard utf8.count >= 2, let high = digit(utf8[utf8.startIndex]), let low = digit(utf8[utf8.startIndex + 1]) else {
                    throw invalid("a percent escape in it is not two hex digits")
                }
                // The startup message and the password message end each string with a NUL:
                // one inside a user, password, database or host would cut it, or smuggle
                // another startup parameter after it.
                guard high != 0 || low != 0 else { throw invalid("a percent escape in it is %00 (a NUL character)") }
                bytes.append(high << 4 | low)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw invalid("a percent escape in it is not UTF-8")
        }
        return decoded
    }
}
