import FileStore
import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import Logging
import NIOCore
import Responses
import Sandbox
import ServiceLifecycle
import Synchronization

/// The HTTP service: routes, middleware, the sweeper and graceful shutdown around one `ExecutionEngine`.
public final class CodeInterpServer: Sendable {
    public let configuration: ServerConfiguration
    public let engine: ExecutionEngine
    let logger: Logger
    let signer: URLSigner
    /// Admission, metrics and logs of every execution.
    let executions: ServerExecutions
    var metrics: ServerMetrics { executions.metrics }
    var gate: ExecutionGate { executions.gate }
    var healthMonitor: HealthMonitor { executions.healthMonitor }
    let limiter: RateLimiter
    let startedAt = Date()
    let toolState = ToolState()
    let responsesState = ResponsesState()
    /// The page at `/` and its files.
    let web: WebAssets
    /// The model behind `/v1/responses`.
    let upstream: any ModelUpstream
    private let boundPort = Mutex<Int?>(nil)
    private let portWaiters = Mutex<[CheckedContinuation<Int, Never>]>([])
    private let serviceGroup = Mutex<ServiceGroup?>(nil)

    /// - Parameters:
    ///   - engine: a started or not yet started engine; `run` starts it before listening.
    ///   - secret: the URL-signing secret (see `URLSigner.loadOrCreateSecret`).
    ///   - upstream: the model behind `/v1/responses` (`ServerConfiguration.makeUpstream`); nil: the bundled
    ///     scripted demo model.
    public init(configuration: ServerConfiguration, engine: ExecutionEngine, secret: [UInt8], logger: Logger,
                upstream: (any ModelUpstream)? = nil) {
        self.configuration = configuration
        self.upstream = upstream ?? ((try? ScriptedUpstream.demo()) ?? ScriptedUpstream(turns: []))
        self.engine = engine
        self.logger = logger
        web = WebAssets(directory: configuration.webDirectory)
        signer = URLSigner(secret: secret, ttlSeconds: configuration.signedURLTTLSeconds)
        executions = ServerExecutions(
            engine: engine,
            gate: ExecutionGate(running: configuration.maxConcurrentExecutions ?? engine.configuration.slots,
                                queued: configuration.maxQueuedExecutions),
            logger: logger)
        limiter = RateLimiter(perMinute: configuration.rateLimitPerMinute, burst: configuration.rateLimitBurst)
    }

    // MARK: Running

    /// The port the server listens on, once it does (useful with port 0).
    public func waitUntilListening() async -> Int {
        if let port = boundPort.withLock({ $0 }) { return port }
        return await withCheckedContinuation { c in
            let port: Int? = portWaiters.withLock { waiters in
                if let p = boundPort.withLock({ $0 }) { return p }
                waiters.append(c)
                return nil
            }
            if let port { c.resume(returning: port) }
        }
    }

    private func listening(on port: Int) {
        let waiters = portWaiters.withLock { waiters in
            boundPort.withLock { $0 = port }
            defer { waiters = [] }
            return waiters
        }
        for w in waiters { w.resume(returning: port) }
    }

    /// `public_url`, or `http://host:port` with the port actually bound.
    public var baseURL: String {
        configuration.baseURL(boundPort: boundPort.withLock { $0 } ?? configuration.port)
    }

    /// The Hummingbird application serving this API (not started).
    public func makeApplication() -> some ApplicationProtocol {
        let router = buildRouter()
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "codeinterp"),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? configuration.port
                listening(on: port)
                logger.info("listening", metadata: ["url": "\(configuration.baseURL(boundPort: port))"])
            },
            logger: logger)
    }

    /// Runs until SIGTERM/SIGINT (when `handleSignals`) or until the task is cancelled. On graceful shutdown the
    /// server stops accepting connections and lets requests in progress (executions) finish for up to
    /// `shutdownGraceSeconds`; then, when `shutDownEngine`, every sandboxed process is killed.
    public func run(handleSignals: Bool = true, shutDownEngine: Bool = true) async throws {
        try await engine.start()
        await engine.prewarm()
        let app = makeApplication()
        let sweeper = SweeperService(server: self)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if shutDownEngine { services.append(.init(service: EngineShutdownService(engine: engine, logger: logger))) }
        services.append(.init(service: sweeper))
        services.append(.init(service: app))
        let socket = LocalSocketFile(path: LocalSocket.path(dataDirectory: engine.configuration.dataDirectory))
        if let local = makeLocalApplication(socket) { services.append(.init(service: local)) }
        defer { socket.remove() }
        // Stopped first: ends the MCP sessions so that their open streams do not hold the HTTP server's drain.
        services.append(.init(service: MCPSessionsShutdownService(sessions: toolState.mcpSessions)))
        var config = ServiceGroupConfiguration(services: services,
                                               gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
                                               logger: logger)
        config.maximumGracefulShutdownDuration = .seconds(configuration.shutdownGraceSeconds)
        let group = ServiceGroup(configuration: config)
        serviceGroup.withLock { $0 = group }
        defer { serviceGroup.withLock { $0 = nil } }
        try await group.run()
    }

    /// Starts a graceful shutdown of a running `run()`, as SIGTERM does.
    public func stop() async {
        await serviceGroup.withLock { $0 }?.triggerGracefulShutdown()
    }

    // MARK: Routes

    /// Every route the service answers. `/openapi.json` documents exactly these (a test compares them).
    public func buildRouter() -> Router<ServerRequestContext> {
        let router = Router(context: ServerRequestContext.self)
        router.add(middleware: FrontMiddleware(cors: CORSPolicy(origins: configuration.corsOrigins), metrics: metrics))
        router.add(middleware: AuthMiddleware(keys: Set(configuration.apiKeys), signer: signer, limiter: limiter))

        router.get("/healthz") { [self] _, _ in try health() }
        router.get("/openapi.json") { [self] _, _ in jsonResponse(raw: OpenAPIDocument.json(serverURL: baseURL)) }
        router.get("/metrics") { [self] _, _ in try metricsResponse() }

        router.post("/v1/execute") { [self] request, context in try await execute(request, context) }

        router.post("/v1/files") { [self] request, _ in try await uploadFile(request) }
        router.get("/v1/files/{id}") { [self] _, context in try fileObject(try context.parameters.require("id")) }
        router.get("/v1/files/{id}/content") { [self] request, context in
            try fileContent(request, id: try context.parameters.require("id"))
        }
        router.delete("/v1/files/{id}") { [self] _, context in try deleteFile(try context.parameters.require("id")) }

        addSessionRoutes(to: router)
        addToolRoutes(to: router)
        addResponsesRoutes(to: router)
        addWebRoutes(to: router)
        return router
    }

    public static let version = "0.1.0"

    func metricsResponse() throws -> Response {
        let text = metrics.render(.init(
            slots: engine.configuration.slots,
            liveInterpreters: liveInterpreterCount(),
            activeSessions: try? activeSessionCount(),
            storedBytes: try? engine.store.totalBytes(),
            executionsInFlight: gate.inFlight,
            warmPool: engine.poolStatistics, sessionPool: engine.sessionPoolStatistics))
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: Helpers

    func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        jsonResponse(raw: try JSONCoding.encoder.encode(value), status: status)
    }

    func jsonResponse(raw: Data, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: raw)))
    }

    /// Collects a JSON body up to `maxRequestBytes` and checks it is declared as JSON.
    func jsonBody(_ request: Request, allowEmpty: Bool = false) async throws -> Data {
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json"),
           !(allowEmpty && request.headers[.contentLength] == "0") {
            throw APIError(status: .unsupportedMediaType, message: "send the request body as application/json (got \(type))",
                           type: "invalid_request_error", code: "unsupported_media_type")
        }
        do {
            let buffer = try await request.body.collect(upTo: configuration.maxRequestBytes)
            return Data(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError.tooLarge("the JSON request body is larger than \(configuration.maxRequestBytes) bytes")
        }
    }

    /// The absolute, signed download URL of a stored file.
    func signedURL(fileId: String) -> String {
        "\(baseURL)/v1/files/\(fileId)/content?\(signer.query(fileId: fileId))"
    }

    /// Fills in absolute signed URLs and hides host paths (but for the data directory's owner, on the local socket).
    func publish(_ result: ExecutionResult, keepStorePaths: Bool = false) -> ExecutionResult {
        var r = result
        for i in r.files.indices {
            r.files[i].url = signedURL(fileId: r.files[i].id)
            if !keepStorePaths { r.files[i].storePath = nil }
        }
        for i in r.displays.indices { r.displays[i].url = signedURL(fileId: r.displays[i].fileId) }
        return r
    }
}

/// Calls the engine's sweep every `sweepIntervalSeconds` until shutdown.
struct SweeperService: Service {
    let server: CodeInterpServer

    func run() async throws {
        let interval = Duration.seconds(server.configuration.sweepIntervalSeconds)
        while !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
            server.sweepOnce()
            let ended = await server.toolState.mcpSessions.expire(idleSeconds: server.configuration.sessionIdleTimeoutSeconds)
            if ended > 0 { server.logger.info("sweep", metadata: ["mcp_sessions_expired": "\(ended)"]) }
        }
    }
}

/// Ends every `/mcp` session when a graceful shutdown starts.
struct MCPSessionsShutdownService: Service {
    let sessions: MCPHTTPSessions

    func run() async throws {
        try? await gracefulShutdown()
        await sessions.closeAll()
    }
}

/// Last to stop: once the HTTP server has drained (or the grace period ended), kills every sandboxed process.
struct EngineShutdownService: Service {
    let engine: ExecutionEngine
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("stopping the sandbox engine")
        engine.shutdown()
    }
}
