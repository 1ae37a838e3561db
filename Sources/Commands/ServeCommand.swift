import ArgumentParser
import FileStore
import Foundation
import Logging
import Responses
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

    @Option(name: .customLong("upstream-base-url"),
            help: "The model behind /v1/responses: a Chat Completions or Responses server (e.g. http://localhost:11434/v1).")
    var upstreamBaseURL: String?

    @Option(name: .customLong("upstream-api"), help: "What the upstream speaks: chat (default) or responses.")
    var upstreamAPI: String?

    @Option(name: .customLong("upstream-api-key-env"), help: "The NAME of the environment variable holding the upstream's API key.")
    var upstreamAPIKeyEnv: String?

    @Option(name: .customLong("upstream-script"),
            help: "Replay this script of assistant turns (format of examples/scripted-demo.json) instead of calling a model.")
    var upstreamScript: String?

    @Option(name: .customLong("upstream-model"), help: "Send this model name upstream in place of each request's model.")
    var upstreamModel: String?

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
        overrides.upstreamBaseURL = upstreamBaseURL
        overrides.upstreamAPI = upstreamAPI
        overrides.upstreamAPIKeyEnv = upstreamAPIKeyEnv
        overrides.upstreamScript = upstreamScript
        overrides.upstreamModel = upstreamModel
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
        // The page signs in with `?token=`, as Jupyter's does; a configured key is not printed, so neither is a URL with it.
        var pageKey: String? = nil
        if settings.apiKeys.isEmpty {
            let (key, created) = try ServerKeys.loadOrCreateAPIKey(dataDirectory: dataDirectory)
            settings.apiKeys = [key]
            pageKey = key
            keyNote = "\(key)  (\(created ? "generated and saved" : "read from") \(dataDirectory)/api-key)"
        }
        let secret = try URLSigner.loadOrCreateSecret(dataDirectory: dataDirectory)
        let upstream: any ModelUpstream
        do {
            upstream = try settings.makeUpstream(environment: environment)
        } catch let error as ConfigurationError {
            throw ValidationError("configuration: \(error.description)")
        }
        let server = CodeInterpServer(configuration: settings, engine: engine, secret: secret, logger: logger, upstream: upstream)

        let announce = Task {
            let port = await server.waitUntilListening()
            var lines = "codeinterp serving on \(settings.baseURL(boundPort: port))\n"
            if settings.publicURL == nil, settings.host != "127.0.0.1", settings.host != "localhost", settings.host != "::1" {
                lines += "  (listening on \(settings.host):\(port))\n"
            }
            let base = settings.baseURL(boundPort: port)
            lines += "  open in a browser: \(base)/\(pageKey.map { "?token=" + $0 } ?? "  (sign in with your API key)")\n"
            lines += "  API key: \(keyNote)\n"
            lines += "  model for /v1/responses: \(upstream.label)\(settings.upstreamScript == nil && settings.upstreamBaseURL == nil ? " (the bundled demo; set upstream_base_url for a real model)" : "")\n"
            if let configFile { lines += "  config: \(configFile)\n" }
            lines += "  data: \(dataDirectory)\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
        defer { announce.cancel() }
        // `codeinterp packages install|remove`, or a profile's preload edited, while we serve: the worker is replaced,
        // gracefully.
        let packagesWatch = Task { await engine.restartWorkerWhenPackagesChange(logger: Logger(label: "codeinterp.engine")) }
        defer { packagesWatch.cancel() }
        logger.info("starting the sandbox engine (preloading the scientific stack)")
        try await server.run()
    }
}
