import AsyncHTTPClient
import Foundation
import Hummingbird
import InterpreterCore
import NIOHTTP1
import Logging
import Sandbox
import Server
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One engine (one zygote) for every test; each test starts its own server (cheap) on a free port of 127.0.0.1.
enum ServerFixture {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let apiKey = "test-key-1"

    /// Fresh per run: inside the test pid namespace getpid() is the same small number every time.
    static let dataDirectory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-server-tests-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    /// The test bundle lives in .build-xxx/<triple>/debug/, next to the binaries.
    static var buildDirectory: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }

    static func executable(_ name: String) -> String {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDir.appendingPathComponent(name).path,
                          bundleDir.deletingLastPathComponent().appendingPathComponent(name).path]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return bundleDir.appendingPathComponent(name).path
    }

    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_PROFILES_DIR"] = packageRoot.appendingPathComponent("sandbox-profiles").path
        env["CODEINTERP_PRELOAD"] = "numpy,pandas,matplotlib,matplotlib.pyplot"
        env["CODEINTERP_WORKER"] = executable("codeinterp-worker")
        return env
    }

    static let engine: ExecutionEngine = {
        ensureLoopback()
        var config = EngineConfiguration.defaults(dataDirectory: dataDirectory, environment: environment)
        config.slots = 3
        config.sessionSlots = 4
        var logger = Logger(label: "test.engine")
        logger.logLevel = .warning
        return try! ExecutionEngine(configuration: config, logger: logger)
    }()

    static let secret = (try? URLSigner.loadOrCreateSecret(dataDirectory: dataDirectory)) ?? Array(repeating: 7, count: 32)

    /// The suite runs in a fresh network namespace (scripts/test) where `lo` is down: 127.0.0.1 then binds but
    /// nothing can connect to it. Bringing `lo` up is harmless where it already is.
    static func ensureLoopback() { _ = loopbackUp }

    static let loopbackUp: Bool = {
        for ip in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] where FileManager.default.isExecutableFile(atPath: ip) {
            return (try? Subprocess.run([ip, "link", "set", "lo", "up"]).status) == 0
        }
        return false
    }()

}

/// A server on a free port in front of the shared engine; `stop()` cancels it (the engine stays up).
final class TestServer: Sendable {
    let server: CodeInterpServer
    let task: Task<Void, any Error>
    let base: String

    private init(server: CodeInterpServer, task: Task<Void, any Error>, base: String) {
        self.server = server
        self.task = task
        self.base = base
    }

    static func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        var config = ServerConfiguration()
        config.port = 0
        config.apiKeys = [ServerFixture.apiKey]
        config.dataDirectory = ServerFixture.dataDirectory
        configure(&config)
        try config.validate()
        var logger = Logger(label: "test.server")
        logger.logLevel = .warning
        let server = CodeInterpServer(configuration: config, engine: ServerFixture.engine, secret: ServerFixture.secret,
                                      logger: logger)
        let task = Task { try await server.run(handleSignals: false, shutDownEngine: false) }
        let port = await server.waitUntilListening()
        return TestServer(server: server, task: task, base: "http://127.0.0.1:\(port)")
    }

    func stop() async {
        await server.stop()
        _ = try? await task.value
    }

    struct Reply {
        var status: Int
        var headers: [(String, String)]
        var body: Data

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any], "not a JSON object: \(text)")
        }
        /// The error envelope: all four keys present.
        func envelope() throws -> [String: Any] {
            let object = try json()
            let error = try #require(object["error"] as? [String: Any], "no error envelope: \(text)")
            #expect(Set(error.keys) == ["message", "type", "param", "code"], "envelope keys: \(error.keys)")
            #expect((error["message"] as? String)?.isEmpty == false)
            return error
        }
    }

    func request(_ method: HTTPClientMethod, _ path: String, key: String? = ServerFixture.apiKey, headers: [(String, String)] = [],
                 json: Any? = nil, body: Data? = nil, contentType: String? = nil) async throws -> Reply {
        var request = HTTPClientRequest(url: path.hasPrefix("http") ? path : base + path)
        request.method = method.nio
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
        } else if let body {
            if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                     body: Data(bytes.readableBytesView))
    }

    /// A multipart/form-data upload with one `file` part, as `curl -F file=@NAME` or the OpenAI SDK send it.
    func upload(_ path: String, filename: String, content: Data, extraFields: [String: String] = [:]) async throws -> Reply {
        let boundary = "----codeinterp-test-\(UUID().uuidString)"
        var body = Data()
        for (name, value) in extraFields {
            body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        body += content
        body += Data("\r\n--\(boundary)--\r\n".utf8)
        return try await request(.post, path, body: body, contentType: "multipart/form-data; boundary=\(boundary)")
    }

    func execute(_ code: String, extra: [String: Any] = [:]) async throws -> Reply {
        var body: [String: Any] = ["code": code]
        for (k, v) in extra { body[k] = v }
        return try await request(.post, "/v1/execute", json: body)
    }
}

enum HTTPClientMethod {
    case get, post, delete, options
    var nio: HTTPMethod {
        switch self {
        case .get: .GET
        case .post: .POST
        case .delete: .DELETE
        case .options: .OPTIONS
        }
    }
}

/// Reads a Server-Sent Events stream event by event, with the parser the CLI uses.
struct SSEReader {
    var iterator: HTTPClientResponse.Body.AsyncIterator
    var parser = ServerSentEvents()
    var ready: [Event] = []

    init(iterator: HTTPClientResponse.Body.AsyncIterator) { self.iterator = iterator }

    struct Event {
        var name: String
        var data: String
        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
        }
    }

    /// The next event, or nil at the end of the stream. Comments and events without data are skipped.
    mutating func next() async throws -> Event? {
        while ready.isEmpty {
            guard let chunk = try await iterator.next() else { return nil }
            ready = parser.feed(chunk.readableBytesView).map { Event(name: $0.event, data: $0.data) }
        }
        return ready.removeFirst()
    }
}
