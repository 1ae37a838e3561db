import ArgumentParser
import FileStore
import Foundation
import Logging
import Sandbox
import Server

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API (native, OpenAI-compatible containers and files, SSE, /metrics).",
        discussion: """
            Settings come from, highest first: these flags, CODEINTERP_* environment variables, the JSON config file \
            (--config, or DATA/config.json when present), built-in defaults. Without any API key configured, one is \
            generated and kept in DATA/api-key (mode 0600), so restarts keep it. SIGTERM or SIGINT stops accepting \
            requests, lets running executions finish for shutdown_grace_s, then kills every sandboxed process.
            """)

    @Option(help: "A JSON config file (keys: \(ServerConfiguration.keys.map(\.json).joined(separator: ", "))).")
    var config: String?

    @Option(help: "Address to listen on (default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (default 8080; 0 picks a free one).")
    var port: Int?

    @Option(name: .customLong("api-key"), help: "An accepted API key (repeatable).")
    var apiKeys: [String] = []

    @Option(name: .customLong("public-url"), help: "Base of absolute URLs in results (default http://HOST:PORT).")
    var publicURL: String?

    @Option(name: .customLong("cors-origin"), help: "A browser origin allowed by CORS, or * (repeatable).")
    var corsOrigins: [String] = []

    @Option(name: .customLong("max-queued"), help: "Executions that may wait for a slot before new ones get 429.")
    var maxQueued: Int?

    @Option(name: .customLong("rate-limit"), help: "Requests per minute per API key (0: unlimited).")
    var rateLimit: Int?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @OptionGroup var engineOptions: EngineOptions

    func run() async throws {
        var overrides = ServerConfiguration.Overrides()
        overrides.host = host
        overrides.port = port
        overrides.apiKeys = apiKeys.isEmpty ? nil : apiKeys
        overrides.publicURL = publicURL
        overrides.corsOrigins = corsOrigins.isEmpty ? nil : corsOrigins
        overrides.slots = engineOptions.slots
        overrides.dataDirectory = engineOptions.dataDirectory
        overrides.maxQueuedExecutions = maxQueued
        overrides.rateLimitPerMinute = rateLimit
        overrides.logLevel = logLevel
        let environment = ProcessInfo.processInfo.environment
        var settings: ServerConfiguration
        let configFile: String?
        do {
            (settings, configFile) = try ServerConfiguration.resolve(
                configFile: config, environment: environment, overrides: overrides,
                defaultDataDirectory: FileStore.defaultDirectory(environment: environment))
        } catch let error as ConfigurationError {
            throw ValidationError("configuration: \(error.description)")
        }

        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "codeinterp.server")

        let engineConfig = settings.engineConfiguration(EngineConfiguration.defaults(dataDirectory: settings.dataDirectory))
        let engine = try ExecutionEngine(configuration: engineConfig, logger: Logger(label: "codeinterp.engine"))
        let dataDirectory = engine.configuration.dataDirectory

        var keyNote = "from the configuration (\(settings.apiKeys.count) key\(settings.apiKeys.count == 1 ? "" : "s"))"
        if settings.apiKeys.isEmpty {
            let (key, created) = try ServerKeys.loadOrCreateAPIKey(dataDirectory: dataDirectory)
            settings.apiKeys = [key]
            keyNote = "\(key)  (\(created ? "generated and saved" : "read from") \(dataDirectory)/api-key)"
        }
        let secret = try URLSigner.loadOrCreateSecret(dataDirectory: dataDirectory)
        let server = CodeInterpServer(configuration: settings, engine: engine, secret: secret, logger: logger)

        let announce = Task {
            let port = await server.waitUntilListening()
            var lines = "codeinterp serving on \(settings.baseURL(boundPort: port))\n"
            if settings.publicURL == nil, settings.host != "127.0.0.1", settings.host != "localhost", settings.host != "::1" {
                lines += "  (listening on \(settings.host):\(port))\n"
            }
            lines += "  API key: \(keyNote)\n"
            if let configFile { lines += "  config: \(configFile)\n" }
            lines += "  data: \(dataDirectory)\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
        defer { announce.cancel() }
        logger.info("starting the sandbox engine (preloading the scientific stack)")
        try await server.run()
    }
}
