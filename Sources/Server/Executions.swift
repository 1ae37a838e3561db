import FileStore
import Foundation
import InterpreterCore
import Logging
import Sandbox
import Tools

/// Every execution this server runs, whichever way it came in (`/v1/execute`, `/v1/tools/call`, `/mcp`, the
/// Responses loop, `codeinterp mcp`/`chat`/`run` through the local socket): one place for admission (the gate),
/// metrics, logs and the health monitor. The tool layer sees it as its `CodeExecutor`, so a model's tool call is
/// counted, logged and refused when the queue is full like any other. Signed URLs are not added here: they are how
/// `/v1/execute` shows a result (`CodeInterpServer.publish`); the tools link files themselves and the Responses API
/// names them by id.
final class ServerExecutions: CodeExecutor {
    let engine: ExecutionEngine
    let gate: ExecutionGate
    let metrics: ServerMetrics
    let healthMonitor: HealthMonitor
    private let logger: Logger

    init(engine: ExecutionEngine, gate: ExecutionGate, logger: Logger) {
        self.engine = engine
        self.gate = gate
        metrics = ServerMetrics()
        healthMonitor = HealthMonitor()
        self.logger = logger
    }

    /// A place in the gate, or `EngineError.busy` (counted as rejected). Taken before anything is answered, so a
    /// stream that starts has its place.
    func admit() throws(EngineError) -> GateTicket {
        guard gate.tryEnter() else {
            metrics.recordRejectedExecution()
            throw EngineError(.busy, "too many executions are waiting (limit \(gate.capacity)); retry shortly")
        }
        return GateTicket(gate)
    }

    /// Runs a checked execution that holds `ticket`, with metrics and logs.
    func run(_ prepared: PreparedExecution, ticket: GateTicket, logger: Logger,
             output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) async throws -> ExecutionResult {
        defer { withExtendedLifetime(ticket) {} }
        let started = ContinuousClock.now
        do {
            let result = try await engine.execute(prepared, output: output)
            healthMonitor.executionRan()
            metrics.recordExecution(status: result.status, seconds: (ContinuousClock.now - started) / .seconds(1))
            logger.info("execution finished", metadata: [
                "status": "\(result.status.rawValue)", "wall_ms": "\(result.usage.wallMs)", "cpu_ms": "\(result.usage.cpuMs)",
                "files": "\(result.files.count)",
            ])
            if result.status == .blockedSyscall {
                // Without a name when the code had blocked SIGSYS (the kernel ended it before the handler ran).
                logger.warning("execution stopped by a blocked system call",
                               metadata: ["syscall": "\(result.blockedSyscall ?? "unknown")"])
            }
            return result
        } catch {
            if let e = error as? EngineError, EngineErrorKind(e) == .unavailable { healthMonitor.executionFailed(e.message) }
            metrics.recordExecutionFailure()
            logger.error("execution failed", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// The logger of one execution: the request's, with the execution's ids and the way it came in.
    func executionLogger(_ request: ExecutionRequest, base: Logger? = nil, entry: String) -> Logger {
        var log = base ?? logger
        log[metadataKey: "session_id"] = request.sessionId.map { .string($0) }
        log[metadataKey: "execution_id"] = .string("exec_\(request.id)")
        log[metadataKey: "entry"] = .string(entry)
        return log
    }

    // MARK: CodeExecutor (the tool calls, MCP and the Responses loop)

    var store: FileStore { engine.store }
    var localEngine: ExecutionEngine? { engine }

    func sandboxProfile(_ nameOrPath: String) throws -> SandboxProfile { try engine.sandboxProfile(nameOrPath) }

    func run(_ request: ExecutionRequest) async throws -> ExecutionResult {
        let ticket = try admit()
        let log = executionLogger(request, entry: "tool")
        let prepared = try engine.prepare(request)
        log.info("execution accepted", metadata: ["code_bytes": "\(request.code.utf8.count)"])
        return try await run(prepared, ticket: ticket, logger: log, output: nil)
    }

    func openSession(_ options: SessionOptions) async throws -> SessionRecord { try await engine.openSession(options) }
}
