import Foundation
import HTTPTypes
import Hummingbird
import Sandbox
import Synchronization

/// What `/healthz` says: healthy only while executions can run. Executions report how they ended; when the worker
/// is gone or the last one failed for the sandbox's sake (set-up failing, no space for its /mnt/data, the worker
/// died under it), the service is unhealthy with that reason, and a probe execution (one at a time, started by
/// the health check itself) finds out when it can run again.
final class HealthMonitor: Sendable {
    private struct State {
        /// Why executions cannot run, from the last one that tried; nil when the last one ran.
        var failure: String?
        var probing = false
    }
    private let state = Mutex(State())

    func executionRan() { state.withLock { $0.failure = nil } }

    func executionFailed(_ reason: String) { state.withLock { $0.failure = reason } }

    /// The reason executions cannot run now, or nil. When there is one, a probe is started (unless one runs).
    func check(_ engine: ExecutionEngine) -> String? {
        let running = engine.workerRunning
        let (reason, startProbe) = state.withLock { s -> (String?, Bool) in
            let reason = running ? s.failure : "the sandbox worker is not running" + (s.failure.map { " (\($0))" } ?? "")
            guard reason != nil, !s.probing else { return (reason, false) }
            s.probing = true
            return (reason, true)
        }
        if startProbe {
            Task { [self] in
                await probe(engine)
                state.withLock { $0.probing = false }
            }
        }
        return reason
    }

    /// Runs `1` in a fresh sandbox, starting a worker first when none runs. Straight to the engine, not through
    /// `ServerExecutions`: a probe is the server's own, so it takes no place of a caller's in the gate and is not
    /// counted with the callers' executions.
    private func probe(_ engine: ExecutionEngine) async {
        do {
            let r = try await engine.execute(ExecutionRequest(code: "1", timeoutSeconds: 30))
            if r.status == .ok { executionRan() } else { executionFailed("a probe execution ended \(r.status.rawValue)") }
        } catch let e as EngineError where EngineErrorKind(e) == .unavailable {
            executionFailed(e.message)
        } catch {
            // Busy (queue full) or cancelled: that says nothing about whether executions can run.
        }
    }
}

extension CodeInterpServer {
    struct Health: Encodable {
        var status: String
        var reason: String?
        var version: String
        var uptime_s: Int
        var slots: Int
        var executions_in_flight: Int
    }

    /// `GET /healthz`: 200 `ok` while executions can run, else 503 `unavailable` with the reason.
    func health() throws -> Response {
        let reason = healthMonitor.check(engine)
        let body = Health(status: reason == nil ? "ok" : "unavailable", reason: reason, version: Self.version,
                          uptime_s: Int(Date().timeIntervalSince(startedAt)), slots: engine.configuration.slots,
                          executions_in_flight: gate.inFlight)
        return try jsonResponse(body, status: reason == nil ? .ok : .serviceUnavailable)
    }
}
