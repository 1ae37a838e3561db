import FileStore
import Foundation
import Hummingbird
import Sandbox

/// The parts of the server that depend on the engine's session API (stateless-only until it lands).
extension CodeInterpServer {
    func requireSession(_ id: String, param: String) throws {
        throw APIError.notFound("session", id: id, param: param)
    }

    func makeEngineRequest(code: String, timeout: Double?, sessionId: String?, fileIds: [String]) -> ExecutionRequest {
        ExecutionRequest(code: code, timeoutSeconds: timeout, sessionId: sessionId)
    }

    func removeStoredFile(_ file: StoredFile) throws {
        _ = try engine.store.delete(id: file.id)
    }

    func sweepOnce() {
        do {
            let removed = try engine.store.sweepExpired()
            if removed > 0 { logger.info("sweep", metadata: ["files_removed": "\(removed)"]) }
        } catch {
            logger.error("sweep failed", metadata: ["error": "\(error)"])
        }
    }

    func liveInterpreterCount() -> Int? { nil }
    func activeSessionCount() throws -> Int? { nil }

    func addSessionRoutes(to router: Router<ServerRequestContext>) {}
}
extension OpenAPIDocument { static let includeSessions = false }
