import FileStore
import Foundation
import InterpreterCore
import Sandbox

/// What the tool layer runs code with: an engine in this process (the server; `mcp` and `chat` without a server),
/// or a running `codeinterp serve` of the same data directory (`mcp` and `chat` next to one, see the Commands
/// module). Either way the data directory is the same, so files and the tools' tables are read from `store`
/// directly; only what needs the interpreters (sessions made, code run) goes through the executor.
public protocol CodeExecutor: Sendable {
    /// The data directory's store: the files results name, sessions' rows, the tools' tables.
    var store: FileStore { get }
    /// The profile code runs under (for the limits the tool's description states).
    func sandboxProfile(_ nameOrPath: String) throws -> SandboxProfile
    /// Runs one execution to its result (in `request.sessionId`'s interpreter when set). An unknown or expired
    /// session is `EngineError.notFound`.
    func run(_ request: ExecutionRequest) async throws -> ExecutionResult
    func openSession(_ options: SessionOptions) async throws -> SessionRecord
    /// The engine in this process behind this executor, if there is one (uploads into sessions, deleting them).
    var localEngine: ExecutionEngine? { get }
}

extension CodeExecutor {
    public var localEngine: ExecutionEngine? { nil }

    /// The session, or nil when unknown or expired (a row of the shared database).
    public func session(id: String) throws -> SessionRecord? { try store.session(id: id) }

    /// The files in the session's /mnt/data as of its last execution or upload.
    public func sessionFiles(sessionId: String) throws -> [StoredFile] {
        guard let session = try store.session(id: sessionId) else {
            throw EngineError(.notFound, "no session with id \(sessionId) (it may have expired)")
        }
        return try store.currentFiles(sessionId: session.id)
    }
}

extension ExecutionEngine: CodeExecutor {
    public var localEngine: ExecutionEngine? { self }

    public func sandboxProfile(_ nameOrPath: String) throws -> SandboxProfile { try profile(nameOrPath).0 }

    public func run(_ request: ExecutionRequest) async throws -> ExecutionResult { try await execute(request, output: nil) }

    public func openSession(_ options: SessionOptions) async throws -> SessionRecord { try createSession(options) }
}
