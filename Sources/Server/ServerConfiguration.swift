import Foundation
import InterpreterCore
import Sandbox

/// Every knob of the HTTP service. Sources, lowest to highest precedence: the defaults below, a JSON config file,
/// `CODEINTERP_*` environment variables, command-line flags (`ServerConfiguration.Overrides`).
///
/// The JSON file uses the snake_case names of `ServerConfiguration.keys`; an unknown key is an error that names it
/// (and the closest known key), so a typo never silently falls back to a default.
public struct ServerConfiguration: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Accepted API keys (`Authorization: Bearer KEY` or `X-API-Key: KEY`). Empty: the command generates one.
    public var apiKeys: [String] = []
    /// Base of the absolute URLs in results (`https://ci.example.com`); nil: `http://host:port`.
    public var publicURL: String?
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    public var corsOrigins: [String] = []
    /// Largest `code` accepted by /v1/execute, in UTF-8 bytes.
    public var maxCodeBytes = 256 << 10
    /// Largest uploaded file (multipart), in bytes.
    public var maxUploadBytes: Int64 = 100 << 20
    /// Largest JSON request body, in bytes.
    public var maxRequestBytes = 1 << 20
    /// Requests per minute per API key (token bucket refill rate); 0 disables the limit.
    public var rateLimitPerMinute = 600
    /// Requests a key may make at once before the rate applies (bucket size).
    public var rateLimitBurst = 100
    /// How long a signed file URL stays valid, in seconds.
    public var signedURLTTLSeconds = 3_600
    /// How long stored files (outputs, figures, uploads) are kept, in seconds; the engine's `fileRetentionSeconds`.
    public var fileRetentionSeconds = 86_400
    /// Sessions (containers) expire after this many idle seconds unless created with their own timeout.
    public var sessionIdleTimeoutSeconds = 1_200
    /// Executions running at once through this server; nil: the engine's slot count.
    public var maxConcurrentExecutions: Int?
    /// Executions allowed to wait for a free slot; beyond that /v1/execute answers 429 at once.
    public var maxQueuedExecutions = 16
    /// Seconds between sweeps of expired files and idle sessions.
    public var sweepIntervalSeconds = 60
    /// On SIGTERM/SIGINT, how long running executions may take to finish before every child is killed.
    public var shutdownGraceSeconds = 30
    /// The engine's slots (executions that may run at once); nil: the engine's default for this machine.
    public var slots: Int?
    /// Session interpreters that may live at once; beyond that the one idle longest is stopped (its files stay).
    public var sessionSlots: Int?
    /// Where files, metadata, the API key and the signing secret live; nil: the engine's default.
    public var dataDirectory: String?
    /// swift-log level: trace, debug, info, notice, warning, error, critical.
    public var logLevel = "info"
    /// The model behind `/v1/responses`: base URL of a Chat Completions or Responses server
    /// (`https://api.openai.com/v1`, `http://localhost:11434/v1`); nil: a scripted model.
    public var upstreamBaseURL: String?
    /// `chat` (Chat Completions) or `responses` (the Responses API, with `store: false`).
    public var upstreamAPI = "chat"
    /// The NAME of the environment variable that holds the upstream's API key (the key itself is never configured).
    public var upstreamAPIKeyEnv: String?
    /// A script of assistant turns (the format of `examples/scripted-demo.json`) replayed instead of a model.
    public var upstreamScript: String?
    /// The model name sent upstream in place of each request's `model` (a local server's own name); nil: as asked.
    public var upstreamModel: String?
    /// Serve the page at `/` from this directory instead of the copy built into the binary (for working on the
    /// page: a reload shows an edit, no rebuild needed); nil: the built-in copy.
    public var webDirectory: String?

    public init() {}

    /// The engine settings this configuration implies, on top of the engine's defaults for this machine.
    public func engineConfiguration(_ base: EngineConfiguration) -> EngineConfiguration {
        var e = base
        if let slots { e.slots = slots }
        if let sessionSlots { e.sessionSlots = sessionSlots }
        e.maxQueued = maxQueuedExecutions
        e.sessionIdleSeconds = sessionIdleTimeoutSeconds
        e.fileRetentionSeconds = fileRetentionSeconds
        return e
    }

    /// The JSON keys of a config file, each with the environment variable that sets it.
    public static let keys: [(json: String, env: String)] = [
        ("host", "CODEINTERP_HOST"), ("port", "CODEINTERP_PORT"), ("api_keys", "CODEINTERP_API_KEYS"),
        ("public_url", "CODEINTERP_PUBLIC_URL"), ("cors_origins", "CODEINTERP_CORS_ORIGINS"),
        ("max_code_bytes", "CODEINTERP_MAX_CODE_BYTES"), ("max_upload_bytes", "CODEINTERP_MAX_UPLOAD_BYTES"),
        ("max_request_bytes", "CODEINTERP_MAX_REQUEST_BYTES"),
        ("rate_limit_per_minute", "CODEINTERP_RATE_LIMIT_PER_MINUTE"), ("rate_limit_burst", "CODEINTERP_RATE_LIMIT_BURST"),
        ("signed_url_ttl_s", "CODEINTERP_SIGNED_URL_TTL_S"), ("file_retention_s", "CODEINTERP_FILE_RETENTION_S"),
        ("session_idle_timeout_s", "CODEINTERP_SESSION_IDLE_TIMEOUT_S"),
        ("max_concurrent_executions", "CODEINTERP_MAX_CONCURRENT_EXECUTIONS"),
        ("max_queued_executions", "CODEINTERP_MAX_QUEUED_EXECUTIONS"),
        ("sweep_interval_s", "CODEINTERP_SWEEP_INTERVAL_S"), ("shutdown_grace_s", "CODEINTERP_SHUTDOWN_GRACE_S"),
        ("slots", "CODEINTERP_SLOTS"), ("session_slots", "CODEINTERP_SESSION_SLOTS"), ("data_dir", "CODEINTERP_DATA_DIR"), ("log_level", "CODEINTERP_LOG_LEVEL"),
        ("upstream_base_url", "CODEINTERP_UPSTREAM_BASE_URL"), ("upstream_api", "CODEINTERP_UPSTREAM_API"),
        ("upstream_api_key_env", "CODEINTERP_UPSTREAM_API_KEY_ENV"), ("upstream_script", "CODEINTERP_UPSTREAM_SCRIPT"),
        ("upstream_model", "CODEINTERP_UPSTREAM_MODEL"), ("web_dir", "CODEINTERP_WEB_DIR"),
    ]

    /// Values given on the command line; nil means "not given".
    public struct Overrides: Sendable {
        public var host: String?
        public var port: Int?
        public var apiKeys: [String]?
        public var publicURL: String?
        public var corsOrigins: [String]?
        public var slots: Int?
        public var dataDirectory: String?
        public var maxQueuedExecutions: Int?
        public var rateLimitPerMinute: Int?
        public var logLevel: String?
        public var upstreamBaseURL: String?
        public var upstreamAPI: String?
        public var upstreamAPIKeyEnv: String?
        public var upstreamScript: String?
        public var upstreamModel: String?
        public init() {}
    }

    /// Resolves the configuration: defaults < file < environment < flags. The file is `configFile` when given
    /// (it must exist), else `<data dir>/config.json` when present; the data directory is looked up first
    /// (flags, environment) so that the file can be found there.
    public static func resolve(configFile: String?, environment: [String: String], overrides: Overrides,
                               defaultDataDirectory: String) throws -> (ServerConfiguration, configFile: String?) {
        var config = ServerConfiguration()
        let dataDirectory = overrides.dataDirectory ?? environment["CODEINTERP_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        var file = configFile
        if file == nil {
            let candidate = (dataDirectory ?? defaultDataDirectory) + "/config.json"
            if FileManager.default.fileExists(atPath: candidate) { file = candidate }
        }
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ConfigurationError("cannot read the config file \(file)")
            }
            try config.apply(json: data, source: file)
        }
        try config.apply(environment: environment)
        config.apply(overrides)
        try config.validate()
        return (config, file)
    }

    // MARK: Sources

    /// Applies a JSON config file. Unknown keys and wrongly typed values are errors naming the key.
    public mutating func apply(json data: Data, source: String) throws {
        let fields = try FieldReader(parsing: data, allowed: Set(Self.keys.map(\.json)),
                                     wording: ConfigurationWording(source: source, namesKey: true))
        for key in fields.object.keys.sorted() { try set(key, from: fields) }
    }

    /// Applies `CODEINTERP_*` variables that are set and not empty.
    public mutating func apply(environment: [String: String]) throws {
        for (json, env) in Self.keys {
            guard let raw = environment[env], !raw.isEmpty else { continue }
            let value: JSONValue
            switch json {
            case "api_keys", "cors_origins":
                value = .array(raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { !$0.isEmpty }.map { .string($0) })
            case "host", "public_url", "data_dir", "log_level", "upstream_base_url", "upstream_api", "upstream_api_key_env",
                 "upstream_script", "upstream_model", "web_dir":
                value = .string(raw)
            default:
                guard let n = Int(raw.trimmingCharacters(in: .whitespaces)) else {
                    throw ConfigurationError("\(env): expected an integer, got \"\(raw)\"")
                }
                value = .int(n)
            }
            try set(json, from: FieldReader(object: [json: value], wording: ConfigurationWording(source: env, namesKey: false)))
        }
    }

    public mutating func apply(_ o: Overrides) {
        if let v = o.host { host = v }
        if let v = o.port { port = v }
        if let v = o.apiKeys { apiKeys = v }
        if let v = o.publicURL { publicURL = v }
        if let v = o.corsOrigins { corsOrigins = v }
        if let v = o.slots { slots = v }
        if let v = o.dataDirectory { dataDirectory = v }
        if let v = o.maxQueuedExecutions { maxQueuedExecutions = v }
        if let v = o.rateLimitPerMinute { rateLimitPerMinute = v }
        if let v = o.logLevel { logLevel = v }
        if let v = o.upstreamBaseURL { upstreamBaseURL = v }
        if let v = o.upstreamAPI { upstreamAPI = v }
        if let v = o.upstreamAPIKeyEnv { upstreamAPIKeyEnv = v }
        if let v = o.upstreamScript { upstreamScript = v }
        if let v = o.upstreamModel { upstreamModel = v }
    }

    /// Sets `key` from the reader's value; a required setting given as `null` is a mismatch.
    private mutating func set(_ key: String, from fields: FieldReader<ConfigurationWording>) throws {
        func int() throws -> Int {
            guard let i = try fields.int(key, nullable: false) else { throw fields.wording.missing(key) }
            return i
        }
        func string() throws -> String {
            guard let s = try fields.string(key, nullable: false) else { throw fields.wording.missing(key) }
            return s
        }
        func strings() throws -> [String] {
            guard let s = try fields.strings(key, nullable: false, acceptingOne: true) else { throw fields.wording.missing(key) }
            return s
        }
        let isNull = fields[key] == .null
        switch key {
        case "host": host = try string()
        case "port": port = try int()
        case "api_keys": apiKeys = try strings()
        case "public_url": publicURL = isNull ? nil : try string()
        case "cors_origins": corsOrigins = try strings()
        case "max_code_bytes": maxCodeBytes = try int()
        case "max_upload_bytes": maxUploadBytes = Int64(try int())
        case "max_request_bytes": maxRequestBytes = try int()
        case "rate_limit_per_minute": rateLimitPerMinute = try int()
        case "rate_limit_burst": rateLimitBurst = try int()
        case "signed_url_ttl_s": signedURLTTLSeconds = try int()
        case "file_retention_s": fileRetentionSeconds = try int()
        case "session_idle_timeout_s": sessionIdleTimeoutSeconds = try int()
        case "max_concurrent_executions": maxConcurrentExecutions = isNull ? nil : try int()
        case "max_queued_executions": maxQueuedExecutions = try int()
        case "sweep_interval_s": sweepIntervalSeconds = try int()
        case "shutdown_grace_s": shutdownGraceSeconds = try int()
        case "slots": slots = isNull ? nil : try int()
        case "session_slots": sessionSlots = isNull ? nil : try int()
        case "data_dir": dataDirectory = isNull ? nil : try string()
        case "log_level": logLevel = try string()
        case "upstream_base_url": upstreamBaseURL = isNull ? nil : try string()
        case "upstream_api": upstreamAPI = try string()
        case "upstream_api_key_env": upstreamAPIKeyEnv = isNull ? nil : try string()
        case "upstream_script": upstreamScript = isNull ? nil : try string()
        case "upstream_model": upstreamModel = isNull ? nil : try string()
        case "web_dir": webDirectory = isNull ? nil : try string()
        default: throw ConfigurationError("\(fields.wording.at(key)): unknown key")
        }
    }

    /// Rejects values that cannot work, naming the setting.
    public func validate() throws {
        func positive(_ name: String, _ value: Int) throws {
            if value <= 0 { throw ConfigurationError("\(name) must be positive (got \(value))") }
        }
        func nonNegative(_ name: String, _ value: Int) throws {
            if value < 0 { throw ConfigurationError("\(name) must not be negative (got \(value))") }
        }
        if host.isEmpty { throw ConfigurationError("host must not be empty") }
        if !(0...65_535).contains(port) { throw ConfigurationError("port must be between 0 and 65535 (got \(port))") }
        if apiKeys.contains(where: { $0.isEmpty || $0.contains(where: \.isWhitespace) }) {
            throw ConfigurationError("api_keys: a key must be non-empty and contain no whitespace")
        }
        if let publicURL {
            guard let url = URL(string: publicURL), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
                throw ConfigurationError("public_url must be an absolute http(s) URL (got \"\(publicURL)\")")
            }
        }
        try positive("max_code_bytes", maxCodeBytes)
        if maxUploadBytes <= 0 { throw ConfigurationError("max_upload_bytes must be positive (got \(maxUploadBytes))") }
        try positive("max_request_bytes", maxRequestBytes)
        try nonNegative("rate_limit_per_minute", rateLimitPerMinute)
        try positive("rate_limit_burst", rateLimitBurst)
        try positive("signed_url_ttl_s", signedURLTTLSeconds)
        try positive("file_retention_s", fileRetentionSeconds)
        try positive("session_idle_timeout_s", sessionIdleTimeoutSeconds)
        if let c = maxConcurrentExecutions { try positive("max_concurrent_executions", c) }
        try nonNegative("max_queued_executions", maxQueuedExecutions)
        try positive("sweep_interval_s", sweepIntervalSeconds)
        try nonNegative("shutdown_grace_s", shutdownGraceSeconds)
        if let slots { try positive("slots", slots) }
        if let sessionSlots { try positive("session_slots", sessionSlots) }
        if let upstreamBaseURL {
            guard let url = URL(string: upstreamBaseURL), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
                throw ConfigurationError("upstream_base_url must be an absolute http(s) URL such as http://localhost:11434/v1 (got \"\(upstreamBaseURL)\")")
            }
        }
        if !["chat", "responses"].contains(upstreamAPI) {
            throw ConfigurationError("upstream_api must be \"chat\" (Chat Completions) or \"responses\" (got \"\(upstreamAPI)\")")
        }
        if upstreamScript != nil && upstreamBaseURL != nil {
            throw ConfigurationError("upstream_script and upstream_base_url are both set: choose the scripted model or the model server")
        }
        if let name = upstreamAPIKeyEnv, name.isEmpty || name.contains(where: { !($0.isLetter || $0.isNumber || $0 == "_") }) {
            throw ConfigurationError("upstream_api_key_env is the NAME of an environment variable (like OPENAI_API_KEY), not the key itself")
        }
        if let webDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: webDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ConfigurationError("web_dir must be a directory holding the page's files (got \"\(webDirectory)\")")
            }
        }
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        if !levels.contains(logLevel) {
            throw ConfigurationError("log_level must be one of \(levels.joined(separator: ", ")) (got \"\(logLevel)\")")
        }
    }

    /// `public_url` without a trailing slash, or `http://host:port` (with the port actually bound).
    public func baseURL(boundPort: Int) -> String {
        if let publicURL {
            var s = Substring(publicURL)
            while s.hasSuffix("/") { s = s.dropLast() }
            return String(s)
        }
        let h = host.contains(":") ? "[\(host)]" : (host == "0.0.0.0" ? "127.0.0.1" : host)
        return "http://\(h):\(boundPort)"
    }
}

/// The configuration's wording: the file (and key) or the environment variable first, as an operator reads it.
struct ConfigurationWording: FieldWording {
    /// The config file's path or the variable's name.
    let source: String
    /// Whether messages name the key after the source (a file has many; a variable is one setting).
    let namesKey: Bool

    func at(_ path: String) -> String { namesKey ? "\(source): \"\(path)\"" : source }

    func empty() -> ConfigurationError? { nil }

    func notJSON(_ parserMessage: String) -> ConfigurationError {
        ConfigurationError("\(source): not valid JSON (\(parserMessage))")
    }

    func notObject(_ value: JSONValue) -> ConfigurationError {
        ConfigurationError("\(source): the configuration must be a JSON object, not \(value.describedType)")
    }

    func unknown(_ key: String, prefix: String, allowed: Set<String>) -> ConfigurationError {
        // Suggested from the keys in their documented order (the first of equally close ones wins), not `allowed`.
        ConfigurationError("\(source): unknown key \"\(prefix + key)\""
            + Suggestion.didYouMean(key, among: ServerConfiguration.keys.map(\.json)))
    }

    func mismatch(_ path: String, expected: String, got: JSONValue) -> ConfigurationError {
        ConfigurationError("\(at(path)): expected \(expected), not \(got.describedType)")
    }

    func elementMismatch(_ path: String, index: Int, expected: String, got: JSONValue) -> ConfigurationError {
        ConfigurationError("\(at(path)): expected an array of strings")
    }

    func missing(_ path: String) -> ConfigurationError { ConfigurationError("\(at(path)): missing") }
}

public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
