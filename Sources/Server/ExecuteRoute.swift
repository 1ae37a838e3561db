import FileStore
import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import Logging
import NIOCore
import Sandbox

extension CodeInterpServer {
    struct ExecuteBody {
        var code: String
        var sessionId: String?
        var timeoutSeconds: Double?
        var fileIds: [String]
    }

    func parseExecute(_ data: Data) throws -> ExecuteBody {
        let fields = try FieldReader(body: data, allowed: ["code", "session_id", "timeout_s", "files"])
        let code = try fields.requiredString("code")
        if code.utf8.count > configuration.maxCodeBytes {
            throw APIError.tooLarge("\"code\" is \(code.utf8.count) bytes; the limit is \(configuration.maxCodeBytes)", param: "code")
        }
        let timeout = try fields.number("timeout_s")
        if let timeout, !(timeout > 0) || !timeout.isFinite {
            throw APIError.invalidRequest("\"timeout_s\" must be a positive number of seconds", param: "timeout_s")
        }
        let sessionId = try fields.string("session_id")
        let files = try fields.strings("files") ?? []
        return ExecuteBody(code: code, sessionId: sessionId, timeoutSeconds: timeout, fileIds: files)
    }

    /// `POST /v1/execute`: the result object, or Server-Sent Events when asked for.
    func execute(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let body = try parseExecute(try await jsonBody(request))
        let executionRequest = try makeExecutionRequest(body)
        let streamParameter = request.uri.queryParameters["stream"].map(String.init)
        guard streamParameter.map({ ["true", "false", "1", "0"].contains($0) }) ?? true else {
            throw APIError.invalidRequest("\"stream\" must be true or false", param: "stream")
        }
        let wantsStream = streamParameter == "true" || streamParameter == "1"
            || (request.headers[.accept]?.lowercased().contains("text/event-stream") ?? false)

        guard gate.tryEnter() else {
            metrics.recordRejectedExecution()
            throw APIError.rateLimited("too many executions are waiting (limit \(gate.capacity)); retry shortly",
                                       retryAfter: 1, code: "queue_full")
        }
        var logger = context.logger
        logger[metadataKey: "session_id"] = executionRequest.sessionId.map { .string($0) }
        logger[metadataKey: "execution_id"] = .string("exec_\(executionRequest.id)")
        logger.info("execution accepted", metadata: ["code_bytes": "\(body.code.utf8.count)", "stream": "\(wantsStream)"])
        let ticket = GateTicket(gate)
        if wantsStream {
            return streamingResponse(executionRequest, ticket: ticket, logger: logger, local: context.local)
        }
        defer { withExtendedLifetime(ticket) {} }
        let result = try await run(executionRequest, logger: logger, local: context.local, output: nil)
        return try jsonResponse(result)
    }

    func makeExecutionRequest(_ body: ExecuteBody) throws -> ExecutionRequest {
        if let sessionId = body.sessionId {
            try requireSession(sessionId, param: "session_id")
        }
        for (i, id) in body.fileIds.enumerated() where try engine.store.file(id: id) == nil {
            throw APIError.notFound("file", id: id, param: "files[\(i)]")
        }
        return makeEngineRequest(code: body.code, timeout: body.timeoutSeconds, sessionId: body.sessionId, fileIds: body.fileIds)
    }

    /// Runs one execution with metrics and logs; the result carries signed URLs.
    func run(_ request: ExecutionRequest, logger: Logger, local: Bool = false,
             output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) async throws -> ExecutionResult {
        let started = ContinuousClock.now
        do {
            let result = try await engine.execute(request, output: output)
            healthMonitor.executionRan()
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            metrics.recordExecution(status: result.status, seconds: seconds)
            let log = logger
            log.info("execution finished", metadata: [
                "status": "\(result.status.rawValue)", "wall_ms": "\(result.usage.wallMs)", "cpu_ms": "\(result.usage.cpuMs)",
                "files": "\(result.files.count)",
            ])
            if let syscall = result.blockedSyscall {
                log.warning("execution stopped by a blocked system call", metadata: ["syscall": "\(syscall)"])
            }
            return publish(result, keepStorePaths: local)
        } catch {
            if let e = error as? EngineError, EngineErrorKind(e) == .unavailable { healthMonitor.executionFailed(e.message) }
            metrics.recordExecutionFailure()
            logger.error("execution failed", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// Streams `stdout`/`stderr` events as the code prints, then `display`, `file` and a final `result` event
    /// carrying the same object the plain call returns. An engine failure ends the stream with `event: error`.
    func streamingResponse(_ request: ExecutionRequest, ticket: GateTicket, logger: Logger, local: Bool) -> Response {
        enum Event: Sendable {
            case output(OutputStreamKind, [UInt8])
            case result(ExecutionResult)
            case failure(APIError)
            case keepAlive
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-cache"
        headers[.init("X-Accel-Buffering")!] = "no"
        let body = ResponseBody { [self] writer in
            let (events, continuation) = AsyncStream<Event>.makeStream()
            let task = Task {
                defer { withExtendedLifetime(ticket) {} }
                do {
                    let result = try await run(request, logger: logger, local: local) { kind, bytes in
                        continuation.yield(.output(kind, bytes))
                    }
                    continuation.yield(.result(result))
                } catch {
                    continuation.yield(.failure(APIError.from(error)))
                }
                continuation.finish()
            }
            // Code that prints nothing writes nothing: a comment every second finds a client that went away (the
            // write fails) while it runs, so that a page's stop button, which drops the stream, stops the code.
            let heartbeat = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    continuation.yield(.keepAlive)
                }
            }
            defer { heartbeat.cancel() }
            // A client that goes away cancels the execution (the engine kills it).
            try await withTaskCancellationHandler {
                do {
                    try await writer.write(ByteBuffer(string: ": execution accepted\n\n"))
                    var stdout = UTF8Chunker(), stderr = UTF8Chunker()
                    for await event in events {
                        switch event {
                        case .output(let kind, let bytes):
                            let text = kind == .stdout ? stdout.append(bytes) : stderr.append(bytes)
                            if !text.isEmpty {
                                try await writer.write(Self.sse(kind == .stdout ? "stdout" : "stderr", TextEvent(text: text)))
                            }
                        case .result(let result):
                            for (kind, chunker) in [("stdout", stdout), ("stderr", stderr)] {
                                var c = chunker
                                let rest = c.flush()
                                if !rest.isEmpty { try await writer.write(Self.sse(kind, TextEvent(text: rest))) }
                            }
                            for display in result.displays { try await writer.write(Self.sse("display", display)) }
                            for file in result.files { try await writer.write(Self.sse("file", file)) }
                            try await writer.write(Self.sse("result", result))
                        case .failure(let error):
                            try await writer.write(ByteBuffer(string: "event: error\ndata: \(String(decoding: error.jsonBody, as: UTF8.self))\n\n"))
                        case .keepAlive:
                            try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                        }
                    }
                } catch {
                    task.cancel()
                    throw error
                }
            } onCancel: {
                task.cancel()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    struct TextEvent: Encodable { var text: String }

    static func sse<T: Encodable>(_ event: String, _ value: T) -> ByteBuffer {
        let data = (try? JSONCoding.encoder.encode(value)) ?? Data("null".utf8)
        // JSON has no raw newlines, so one data line carries the whole object.
        var buffer = ByteBuffer(string: "event: \(event)\ndata: ")
        buffer.writeBytes(data)
        buffer.writeString("\n\n")
        return buffer
    }
}

/// A place in the execution gate, given back when the last holder (the handler, or the streaming body and its
/// task) lets go of it, even if a response body is never written.
final class GateTicket: Sendable {
    let gate: ExecutionGate
    init(_ gate: ExecutionGate) { self.gate = gate }
    deinit { gate.leave() }
}

/// Turns byte chunks into text without splitting a UTF-8 sequence across two events.
struct UTF8Chunker {
    private var pending: [UInt8] = []

    mutating func append(_ bytes: [UInt8]) -> String {
        pending += bytes
        let cut = Self.completePrefixLength(pending)
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }

    /// The length of the longest prefix that does not end inside a multi-byte sequence.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        var i = n - 1
        var continuation = 0
        while i >= 0, i >= n - 4 {
            let b = bytes[i]
            if b & 0xC0 == 0x80 {
                continuation += 1
                i -= 1
                continue
            }
            let length = b & 0x80 == 0 ? 1 : b & 0xE0 == 0xC0 ? 2 : b & 0xF0 == 0xE0 ? 3 : b & 0xF8 == 0xF0 ? 4 : 1
            return length > continuation + 1 ? i : n
        }
        return n
    }
}
