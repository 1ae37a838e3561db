import Foundation
import InterpreterCore
import Sandbox
import Synchronization

/// Counters and a latency histogram, rendered in the Prometheus text format (version 0.0.4) by `/metrics`.
///
/// Written here rather than with swift-metrics + swift-prometheus and Hummingbird's `MetricsMiddleware` (checked
/// against swift-prometheus 2.4.1 and Hummingbird 2.28.1): the middleware records its own names (`hb.requests`,
/// `http.server.request.duration`, dimension `http.route`...) where `/metrics` has `codeinterp_http_requests_total`
/// with `method`, `route` and `status`; swift-prometheus writes every gauge as a Double
/// (`codeinterp_executions_in_flight 1.0`), which changes what scrapers and the tests read; and most gauges here
/// are read from the engine when scraped, which a registry would need copied into it before every render.
final class ServerMetrics: Sendable {
    static let latencyBuckets: [Double] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private struct State {
        var executions: [String: Int] = [:]
        var latencyCounts = [Int](repeating: 0, count: ServerMetrics.latencyBuckets.count)
        var latencySum: Double = 0
        var latencyCount = 0
        var blockedSyscalls = 0
        var rejectedExecutions = 0
        var requests: [RequestKey: Int] = [:]
    }
    struct RequestKey: Hashable {
        var method: String
        var route: String
        var status: Int
    }
    private let state = Mutex(State())

    func recordExecution(status: ExecutionStatus, seconds: Double) {
        state.withLock { s in
            s.executions[status.rawValue, default: 0] += 1
            if status == .blockedSyscall { s.blockedSyscalls += 1 }
            for (i, bound) in Self.latencyBuckets.enumerated() where seconds <= bound { s.latencyCounts[i] += 1 }
            s.latencySum += seconds
            s.latencyCount += 1
        }
    }

    func recordExecutionFailure() {
        state.withLock { $0.executions["failed", default: 0] += 1 }
    }

    func recordRejectedExecution() {
        state.withLock { $0.rejectedExecutions += 1 }
    }

    func recordRequest(method: String, route: String, status: Int) {
        state.withLock { $0.requests[RequestKey(method: method, route: route, status: status), default: 0] += 1 }
    }

    struct Gauges {
        var slots: Int
        var liveInterpreters: Int?
        var activeSessions: Int?
        var storedBytes: Int64?
        var executionsInFlight: Int
        var warmPool: WarmPoolStatistics?
        var sessionPool: WarmPoolStatistics?
    }

    func render(_ g: Gauges) -> String {
        let s = state.withLock { $0 }
        var out = ""
        func header(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        /// A metric of one sample.
        func single(_ name: String, _ type: String, _ help: String, _ value: some Numeric) {
            header(name, type, help)
            out += "\(name) \(value)\n"
        }
        /// A pool's waiting children and how its takes were served (from the pool, or forked on demand).
        func pool(_ p: WarmPoolStatistics, idle: String, idleHelp: String, takes: String, takesHelp: String) {
            single(idle, "gauge", idleHelp, p.idle)
            header(takes, "counter", takesHelp)
            out += "\(takes){source=\"pool\"} \(p.hits)\n"
            out += "\(takes){source=\"on_demand\"} \(p.misses)\n"
        }
        header("codeinterp_executions_total", "counter", "Executions finished, by result status (failed: the sandbox itself failed).")
        let statuses = ExecutionStatus.allCases.map(\.rawValue) + ["failed"]
        for status in statuses {
            out += "codeinterp_executions_total{status=\"\(status)\"} \(s.executions[status] ?? 0)\n"
        }
        single("codeinterp_executions_rejected_total", "counter", "Executions refused because the queue was full.",
               s.rejectedExecutions)
        header("codeinterp_execution_duration_seconds", "histogram", "Wall-clock time of executions as the server saw them.")
        for (i, bound) in Self.latencyBuckets.enumerated() {
            out += "codeinterp_execution_duration_seconds_bucket{le=\"\(bound)\"} \(s.latencyCounts[i])\n"
        }
        out += "codeinterp_execution_duration_seconds_bucket{le=\"+Inf\"} \(s.latencyCount)\n"
        out += "codeinterp_execution_duration_seconds_sum \(s.latencySum)\n"
        out += "codeinterp_execution_duration_seconds_count \(s.latencyCount)\n"
        single("codeinterp_blocked_syscalls_total", "counter", "Executions ended by a forbidden system call.", s.blockedSyscalls)
        single("codeinterp_executions_in_flight", "gauge", "Executions accepted by this server and not finished.",
               g.executionsInFlight)
        single("codeinterp_pool_slots", "gauge", "Executions the engine may run at once.", g.slots)
        if let live = g.liveInterpreters {
            single("codeinterp_live_interpreters", "gauge", "Session interpreters alive in the zygote.", live)
        }
        if let active = g.activeSessions {
            single("codeinterp_active_sessions", "gauge", "Sessions (containers) that have not expired.", active)
        }
        if let bytes = g.storedBytes {
            single("codeinterp_stored_bytes", "gauge", "Bytes held by stored files.", bytes)
        }
        if let p = g.warmPool {
            pool(p, idle: "codeinterp_warm_children",
                 idleHelp: "Stateless children forked and isolated ahead of demand, waiting.",
                 takes: "codeinterp_warm_pool_takes_total",
                 takesHelp: "Stateless executions by how they got their child: warm from the pool, or forked on demand.")
            single("codeinterp_warm_pool_spawned_total", "counter", "Children forked ahead of demand.", p.spawned)
            single("codeinterp_warm_pool_refill_failures_total", "counter",
                   "Refills that could not fork a child (no free slot, the worker refused or died).", p.refillFailures)
            single("codeinterp_warm_pool_primed_children", "gauge",
                   "Waiting children that have rendered a throwaway chart, for the next execution that draws one.", p.primedIdle)
            single("codeinterp_warm_pool_primes_total", "counter",
                   "Waiting children asked to render a throwaway chart (only once the pool has had no execution for a moment).",
                   p.primesAsked)
            single("codeinterp_warm_pool_primed_takes_total", "counter",
                   "Stateless executions that took a primed child.", p.primedTakes)
        }
        if let p = g.sessionPool {
            pool(p, idle: "codeinterp_spare_interpreters",
                 idleHelp: "Session interpreters forked and isolated ahead of demand, waiting for a new session.",
                 takes: "codeinterp_session_interpreter_starts_total",
                 takesHelp: "New session interpreters by how they started: a spare from the pool, or forked on demand.")
        }
        header("codeinterp_http_requests_total", "counter", "HTTP requests by method, route and status.")
        for (key, n) in s.requests.sorted(by: { ($0.key.route, $0.key.method, $0.key.status) < ($1.key.route, $1.key.method, $1.key.status) }) {
            out += "codeinterp_http_requests_total{method=\"\(key.method)\",route=\"\(Self.escape(key.route))\",status=\"\(key.status)\"} \(n)\n"
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
