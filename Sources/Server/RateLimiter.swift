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
            b.tokens = min(Double(burst), b.tokens + (now - b.updated) / .seconds(1) * rate)
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
