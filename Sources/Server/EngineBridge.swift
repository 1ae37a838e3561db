import FileStore
import Foundation
import Sandbox

/// How the server reaches the engine's sessions, files and sweep.
extension CodeInterpServer {
    /// The live session, or 404 naming `param`.
    @discardableResult
    func requireSession(_ id: String, param: String, what: String = "session") throws -> SessionRecord {
        guard let session = try engine.session(id: id) else { throw APIError.notFound(what, id: id, param: param) }
        return session
    }

    /// Deletes a stored file; a file of a live session also leaves its /mnt/data.
    func removeStoredFile(_ file: StoredFile) throws {
        if let sessionId = file.sessionId, try engine.session(id: sessionId) != nil {
            _ = try engine.deleteSessionFile(sessionId: sessionId, fileId: file.id)
        } else {
            _ = try engine.store.delete(id: file.id)
        }
    }

    func sweepOnce() {
        do {
            let report = try engine.sweep()
            if report.expiredFiles + report.expiredSessions + report.staleWorkDirectories > 0 {
                logger.info("sweep", metadata: ["files_removed": "\(report.expiredFiles)",
                                                "sessions_expired": "\(report.expiredSessions)",
                                                "stale_work_directories": "\(report.staleWorkDirectories)"])
            }
        } catch {
            logger.error("sweep failed", metadata: ["error": "\(error)"])
        }
    }

    func liveInterpreterCount() -> Int? { engine.liveInterpreters }
    func activeSessionCount() throws -> Int? { try engine.sessions().count }
}

extension OpenAPIDocument {
    static let includeSessions = true
}
