import AsyncHTTPClient
import FileStore
import Foundation
import InterpreterCore
import Logging
import NIOCore
import NIOHTTP1
import Sandbox
import Server
import Synchronization
import Tools

/// `codeinterp run`, `mcp` and `chat` through a `codeinterp serve` of the same data directory, over its local
/// socket (see `LocalSocket`): the server's warm zygote answers in milliseconds where a fresh engine would first
/// spend seconds importing the scientific stack.
struct LocalServerClient {
    let socketPath: String

    /// The client for the server of `dataDirectory`, when one answers on its socket.
    static func connect(dataDirectory: String) -> LocalServerClient? {
        let path = LocalSocket.path(dataDirectory: dataDirectory)
        return LocalSocket.isLive(path) ? LocalServerClient(socketPath: path) : nil
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `code` (stateless, the server's default profile) and streams its output to `output` as it comes.
    func execute(code: String, timeoutSeconds: Double?,
                 output: @Sendable (OutputStreamKind, String) -> Void) async throws -> ExecutionResult {
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: "/v1/execute") else {
            throw Failure(description: "cannot address the socket \(socketPath)")
        }
        var body: [String: JSONValue] = ["code": .string(code)]
        if let timeoutSeconds { body["timeout_s"] = .double(timeoutSeconds) }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(JSONValue.object(body))))

        let response = try await HTTPClient.shared.execute(request, timeout: .hours(24))
        guard response.status == .ok else {
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            throw Failure(description: "the server answered \(response.status.code): \(Self.message(inError: text))")
        }
        var parser = ServerSentEvents()
        for try await chunk in response.body {
            for event in parser.feed(chunk.readableBytesView) {
                switch event.event {
                case "stdout", "stderr":
                    let text = (try? JSONDecoder().decode(JSONValue.self, from: Data(event.data.utf8)))?["text"]?.stringValue ?? ""
                    output(event.event == "stdout" ? .stdout : .stderr, text)
                case "result":
                    return try JSONDecoder().decode(ExecutionResult.self, from: Data(event.data.utf8))
                case "error":
                    throw Failure(description: Self.message(inError: event.data))
                default:
                    break
                }
            }
        }
        throw Failure(description: "the server closed the stream before the result (did it stop?)")
    }

    /// Whether the server still answers on the socket.
    var isLive: Bool { LocalSocket.isLive(socketPath) }

    /// A JSON request and the server's answer; a status other than `expected` becomes the `EngineError` the
    /// engine itself would have thrown (an unknown session is `.notFound`, a full queue `.busy`).
    func call(_ method: HTTPMethod, _ uri: String, _ body: [String: JSONValue], expected: HTTPResponseStatus = .ok,
              timeout: TimeAmount) async throws -> Data {
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw Failure(description: "cannot address the socket \(socketPath)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(JSONValue.object(body))))
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let data = Data(try await response.body.collect(upTo: 256 << 20).readableBytesView)
        guard response.status == expected else {
            let message = "the server answered \(response.status.code): " + Self.message(inError: String(decoding: data, as: UTF8.self))
            switch response.status {
            case .notFound: throw EngineError(.notFound, message)
            case .tooManyRequests: throw EngineError(.busy, message)
            case .badRequest, .unprocessableEntity: throw EngineError(.badRequest, message)
            default: throw EngineError(.workerFailed, message)
            }
        }
        return data
    }

    /// The message of an API error body (`{"error": {"message": ...}}`), or the text itself.
    static func message(inError text: String) -> String {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))?["error"]?["message"]?.stringValue ?? text
    }
}

/// The executor of `codeinterp mcp` and `codeinterp chat` when a server ran for their data directory as they
/// started: sessions and executions go to the server. Once it no longer answers, they go to an engine of this
/// process, started then (its first execution imports the scientific stack): a session the server made keeps
/// its files (its rows and /mnt/data are in the shared data directory) and starts a fresh interpreter, whose
/// stderr says so. An execution the server was running when it stopped is not run again (it may have had effects):
/// it fails with an error that says what happened.
final class ServerExecutor: CodeExecutor {
    let store: FileStore
    private let server: LocalServerClient
    private let configuration: EngineConfiguration
    private let logger: Logger
    /// Said once to the user when the server is gone.
    private let notice: @Sendable (String) -> Void
    private struct State {
        var serverGone = false
        var engine: ExecutionEngine?
    }
    private let state = Mutex(State())

    init(server: LocalServerClient, configuration: EngineConfiguration, logger: Logger,
         notice: @escaping @Sendable (String) -> Void) throws {
        self.server = server
        self.configuration = configuration
        self.logger = logger
        self.notice = notice
        store = try FileStore(directory: configuration.dataDirectory)
    }

    /// Stops the engine this executor started, if it did.
    func shutdown() { state.withLock { s in defer { s.engine = nil }; return s.engine }?.shutdown() }

    func sandboxProfile(_ nameOrPath: String) throws -> SandboxProfile {
        do { return try SandboxProfile.load(nameOrPath, searching: configuration.profileDirectories) } catch {
            throw EngineError(.profile, error.description)
        }
    }

    func run(_ request: ExecutionRequest) async throws -> ExecutionResult {
        guard let server = liveServer() else { return try await ownEngine().run(request) }
        var body: [String: JSONValue] = ["code": .string(request.code)]
        if let sessionId = request.sessionId { body["session_id"] = .string(sessionId) }
        if let timeout = request.timeoutSeconds { body["timeout_s"] = .double(timeout) }
        // The server enforces the limit; this bound only keeps a server that stopped answering from hanging us.
        let wall = request.timeoutSeconds ?? ((try? sandboxProfile(request.profile).limits.wallSeconds) ?? 30)
        let data: Data
        do {
            data = try await server.call(.POST, "/v1/execute", body, timeout: .seconds(Int64(wall) + 300))
        } catch let error as EngineError {
            throw error
        } catch {
            serverStopped()
            throw EngineError(.workerDied, "the codeinterp server stopped answering during this execution (\(error)); "
                + "it was not run again. Later calls run in an engine of this command's own")
        }
        return try JSONDecoder().decode(ExecutionResult.self, from: data)
    }

    func openSession(_ options: SessionOptions) async throws -> SessionRecord {
        guard let server = liveServer() else { return try await ownEngine().openSession(options) }
        var body: [String: JSONValue] = [:]
        if let name = options.name { body["name"] = .string(name) }
        if let idle = options.idleTimeoutSeconds { body["idle_timeout_s"] = .int(idle) }
        let data: Data
        do {
            data = try await server.call(.POST, "/v1/sessions", body, expected: .created, timeout: .seconds(60))
        } catch let error as EngineError {
            throw error
        } catch {
            serverStopped()
            return try await ownEngine().openSession(options)
        }
        guard let id = (try? JSONValue.parse(data))?["id"]?.stringValue, let record = try store.session(id: id) else {
            throw EngineError(.workerFailed, "the server made a session this command cannot find in \(configuration.dataDirectory)")
        }
        return record
    }

    /// The server while it answers; nil (and the user told, once) from the moment it does not.
    private func liveServer() -> LocalServerClient? {
        if state.withLock({ $0.serverGone }) { return nil }
        if server.isLive { return server }
        serverStopped()
        return nil
    }

    private func serverStopped() {
        let first = state.withLock { s in
            defer { s.serverGone = true }
            return !s.serverGone
        }
        guard first else { return }
        notice("the codeinterp server of \(configuration.dataDirectory) stopped answering: code now runs in an engine "
            + "of this command's own (its first run imports the scientific stack)")
    }

    private func ownEngine() throws -> ExecutionEngine {
        try state.withLock { s in
            if let engine = s.engine { return engine }
            let engine = try ExecutionEngine(configuration: configuration, logger: logger)
            s.engine = engine
            return engine
        }
    }
}

/// Where `mcp` and `chat` run their code: the server of their data directory when one answers and nothing asks
/// for an engine of their own (`--standalone`, a profile other than the server's), else an engine of theirs.
enum CommandExecutor {
    case server(ServerExecutor)
    case engine(ExecutionEngine)

    static func make(configuration: EngineConfiguration, standalone: Bool, profile: String, logger: Logger,
                     notice: @escaping @Sendable (String) -> Void) throws -> CommandExecutor {
        if !standalone, profile == "default", let server = LocalServerClient.connect(dataDirectory: configuration.dataDirectory) {
            return .server(try ServerExecutor(server: server, configuration: configuration, logger: logger, notice: notice))
        }
        return .engine(try ExecutionEngine(configuration: configuration, logger: logger))
    }

    var executor: any CodeExecutor {
        switch self {
        case .server(let s): return s
        case .engine(let e): return e
        }
    }

    var store: FileStore { executor.store }

    func shutdown() {
        switch self {
        case .server(let s): s.shutdown()
        case .engine(let e): e.shutdown()
        }
    }
}
