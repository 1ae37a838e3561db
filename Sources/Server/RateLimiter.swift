import Foundation
import Synchronization

/// A token bucket per API key: `burst` requests at once, refilled at `perMinute` a minute.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }
    private let buckets = Mutex<[String: Bucket]>([:])
    let perMinute: Int
    let burst: Int

    init(perMinute: Int, burst: Int) {
        self.perMinute = perMinute
        self.burst = burst
    }

    /// nil when the request may proceed; otherwise the seconds to wait before the next token.
    func take(key: String, now: ContinuousClock.Instant = .now) -> Int? {
        guard perMinute > 0 else { return nil }
        let rate = Double(perMinute) / 60
        return buckets.withLock { all in
            var b = all[key] ?? Bucket(tokens: Double(burst), updated: now)
            let elapsed = now - b.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            b.tokens = min(Double(burst), b.tokens + seconds * rate)
            b.updated = now
            defer { all[key] = b }
            if b.tokens >= 1 {
                b.tokens -= 1
                return nil
            }
            return Int(((1 - b.tokens) / rate).rounded(.up))
        }
    }
}

/// Bounds the executions this server has accepted: `running` may run, `queued` more may wait; beyond that a
/// request is refused at once (429) instead of piling up behind the engine's slots.
final class ExecutionGate: Sendable {
    private let count = Mutex(0)
    let capacity: Int

    init(running: Int, queued: Int) {
        capacity = max(1, running) + max(0, queued)
    }

    func tryEnter() -> Bool {
        count.withLock { n in
            guard n < capacity else { return false }
            n += 1
            return true
        }
    }

    func leave() {
        count.withLock { $0 -= 1 }
    }

    var inFlight: Int { count.withLock { $0 } }
}
