import Foundation
import InterpreterCore
import Logging
import Synchronization

/// A child forked and isolated ahead of demand, waiting on its command pipe: a stateless one, or a spare
/// interpreter for the next new session.
struct WarmChild: Sendable {
    let child: SandboxChild
    let slot: Int
    let workdir: String
}

/// What a pool's children are made for: one compiled profile (its filter, limits, network). A profile whose file
/// changes gets a new key; children of the old one are not handed out again.
struct PoolKey: Hashable, Sendable {
    var profileName: String
    var filterKey: String
    var network: Bool
    var limits: Limits
}

/// Counters of a warm pool (for /metrics and tests).
public struct WarmPoolStatistics: Sendable, Equatable {
    /// Takes that found a warm child.
    public var hits = 0
    /// Takes that found no child waiting.
    public var misses = 0
    /// Of those, takes that waited for a child already being forked for the pool (nearer than a new fork).
    public var waitedForRefill = 0
    /// Children forked for the pool.
    public var spawned = 0
    /// Refills that failed (no free slot, the worker refused or died).
    public var refillFailures = 0
    /// Waiting children asked to render a throwaway chart (one at a time per pool, only while the pool is quiet).
    public var primesAsked = 0
    /// Takes that found the pool's primed child ready (it had rendered a throwaway chart while it waited).
    public var primedTakes = 0
    /// Warm children waiting now.
    public var idle = 0
    /// Of those, the ones primed and ready (one per pool at most).
    public var primedIdle = 0
}

/// Pools of warm children, one per profile in use, each refilled in the background up to `target`. A child is
/// handed out once (a stateless one runs one execution and exits; a spare interpreter becomes one session's).
/// When a pool is empty (a burst, or it cannot refill) the caller forks on demand, which the counters and the log
/// say.
final class WarmPool: Sendable {
    typealias Stats = WarmPoolStatistics

    private struct State {
        var idle: [PoolKey: [WarmChild]] = [:]
        var refilling: [PoolKey: Int] = [:]
        /// Takes waiting for a child being forked for the pool, served first come, first served.
        var waiters: [PoolKey: [CheckedContinuation<WarmChild?, Never>]] = [:]
        /// Waiting children that died without being used, one after another (isolation failing on this host, say):
        /// refills back off instead of forking in a loop.
        var idleDeaths: [PoolKey: Int] = [:]
        /// The newest key of each profile taken from: refilled again when slots come free.
        var keys: [String: PoolKey] = [:]
        /// Waiting children asked to prime themselves (`SandboxChild.prime`): one per pool at a time.
        var primed: Set<ObjectIdentifier> = []
        /// Executions of each pool between `take` and `finished`: while any runs, no child is asked to prime.
        var running: [PoolKey: Int] = [:]
        /// Bumped by every take and finish of the pool: a priming scheduled for a quiet moment that has since ended
        /// sees a newer value and does nothing.
        var activity: [PoolKey: Int] = [:]
        var stats = Stats()
        var stopped = false

        /// Whether `w` has been asked to prime.
        func asked(_ w: WarmChild) -> Bool { primed.contains(ObjectIdentifier(w.child)) }
        /// Whether one of the waiting children of `key` has been asked (one per pool at a time).
        func hasAsked(_ key: PoolKey) -> Bool { idle[key]?.contains(where: asked) ?? false }
    }
    private let state = Mutex(State())
    let target: Int
    /// How long a pool must have had no execution running before one of its waiting children is asked to prime;
    /// nil: its children are never primed (spare session interpreters: a session's first cell seldom draws, and
    /// the primed pages would stay with the session for its whole life).
    let primeWhenQuietFor: Duration?
    private let logger: Logger
    /// Forks one child for `key` (a slot, a fresh workdir, the spawn); nil when no slot is free right now.
    private let make: @Sendable (PoolKey, _ waitForSlot: Bool) async throws -> WarmChild?
    /// Removes the /mnt/data of a child that will never run.
    private let retire: @Sendable (String) -> Void

    init(target: Int, primeWhenQuietFor: Duration? = nil, logger: Logger,
         make: @escaping @Sendable (PoolKey, Bool) async throws -> WarmChild?,
         retire: @escaping @Sendable (String) -> Void) {
        self.target = target
        self.primeWhenQuietFor = primeWhenQuietFor
        self.logger = logger
        self.make = make
        self.retire = retire
    }

    var stats: Stats {
        state.withLock { s in
            var st = s.stats
            let idle = s.idle.values.joined()
            st.idle = idle.count
            st.primedIdle = idle.filter { s.asked($0) && $0.child.isPrimed }.count
            return st
        }
    }

    /// A warm child for `key`; else the next one the pool's refill brings, when a fork for the pool is already on
    /// its way and not promised to an earlier take (it is part-way through its fork and isolation, nearer than a
    /// new one, and a second fork would only compete with it for the CPU); else one forked now. Either way, the
    /// pool refills behind it.
    ///
    /// When other children of `key` are still waiting, the refill is left to the caller (`refillDeferred`), which
    /// calls `refill(key)` once its execution is answered: the next child's fork and isolation then do not take a
    /// core while this one runs. With none left waiting it starts at once.
    ///
    /// `forChart`: the code looks like it draws (see `mayDrawCharts`), so the pool's primed child suits it best;
    /// other code takes an unprimed child first, leaving the primed one (and its second chart's CPU) for a chart.
    ///
    /// The execution counts as running in the pool until the caller says `finished(key, ...)`, which it must do
    /// once it returns (not when it throws).
    func take(_ key: PoolKey, forChart: Bool = false) async throws -> (WarmChild, warm: Bool, refillDeferred: Bool) {
        state.withLock { s in
            s.running[key, default: 0] += 1
            s.activity[key, default: 0] += 1
        }
        do {
            if let (found, deferred) = takeWarm(key, refill: true, deferringRefill: true, forChart: forChart) {
                return (found, true, deferred)
            }
            if let coming = await nextRefilled(key) {
                if !coming.child.hasExited && coming.child.workerIsAlive { return (coming, true, false) }
                discard(coming)
            }
            guard let child = try await make(key, true) else {
                throw EngineError(.busy, "no sandbox slot is free")
            }
            return (child, false, false)
        } catch {
            finished(key, refill: false)
            throw error
        }
    }

    /// The execution that `take` gave a child to is answered: the pool refills now if the take left that to the
    /// caller (`refillDeferred`), and once none of its executions runs, a waiting child may be primed.
    func finished(_ key: PoolKey, refill refills: Bool) {
        state.withLock { s in
            s.running[key, default: 1] -= 1
            s.activity[key, default: 0] += 1
        }
        if refills { refill(key) } else { primeWhenQuiet(key) }
    }

    /// A warm child for `key` if one is waiting (nil: the caller forks its own). The pool refills behind it,
    /// unless the caller will (once the slot the refill needs is free).
    func takeWarm(_ key: PoolKey, refill refills: Bool = true) -> WarmChild? {
        takeWarm(key, refill: refills, deferringRefill: false, forChart: false)?.0
    }

    /// Whether `code` looks like it draws a chart: then a primed child renders it without copying the zygote's
    /// pages on the request path. A guess that only orders the choice between waiting children.
    static func mayDrawCharts(_ code: String) -> Bool {
        ["plot", "plt", "matplotlib", "seaborn", "sns.", "savefig", "figure"].contains { code.contains($0) }
    }

    /// `takeWarm`, and whether the refill was left to the caller (`deferringRefill` and others still waiting).
    private func takeWarm(_ key: PoolKey, refill refills: Bool, deferringRefill: Bool, forChart: Bool) -> (WarmChild, Bool)? {
        let (found, stale, left) = state.withLock { s -> (WarmChild?, [WarmChild], Int) in
            s.keys[key.profileName] = key
            // Children of an older version of this profile will never be asked for again.
            var stale: [WarmChild] = []
            for k in s.idle.keys where k.profileName == key.profileName && k != key {
                stale += s.idle.removeValue(forKey: k) ?? []
            }
            var live: [WarmChild] = []
            for w in s.idle[key] ?? [] {
                // Died while waiting, its exit not yet seen here?
                if !w.child.hasExited && w.child.workerIsAlive { live.append(w) } else { stale.append(w) }
            }
            for w in stale { s.primed.remove(ObjectIdentifier(w.child)) }
            // The newest first; a chart prefers the primed child, other code any other; one still priming last.
            let ready = live.lastIndex { s.asked($0) && $0.child.isPrimed }
            let unasked = live.lastIndex { !s.asked($0) }
            guard let i = (forChart ? ready ?? unasked : unasked ?? ready) ?? live.indices.last else {
                s.idle[key] = live
                s.stats.misses += 1
                return (nil, stale, 0)
            }
            let w = live.remove(at: i)
            if i == ready { s.stats.primedTakes += 1 }
            s.primed.remove(ObjectIdentifier(w.child))
            s.idle[key] = live
            s.idleDeaths[key] = 0
            s.stats.hits += 1
            return (w, stale, live.count)
        }
        for w in stale { discard(w) }
        let deferred = found != nil && deferringRefill && left > 0
        if refills && !deferred { refill(key) }
        return found.map { ($0, deferred) }
    }

    /// Waits for the child the pool's refill is forking for `key`, if one is on its way for no earlier waiter; nil
    /// at once when none is, or when the refill fails.
    private func nextRefilled(_ key: PoolKey) async -> WarmChild? {
        await withCheckedContinuation { (c: CheckedContinuation<WarmChild?, Never>) in
            let queued = state.withLock { s -> Bool in
                guard !s.stopped, (s.refilling[key] ?? 0) > (s.waiters[key]?.count ?? 0) else { return false }
                s.waiters[key, default: []].append(c)
                s.stats.waitedForRefill += 1
                return true
            }
            if !queued { c.resume(returning: nil) }
        }
    }

    /// Waiters of `key` beyond what its refill still has on the way: none is coming for them (removed under the
    /// caller's lock, resumed by the caller with nil).
    private static func unserved(_ key: PoolKey, in s: inout State) -> [CheckedContinuation<WarmChild?, Never>] {
        let coming = s.stopped ? 0 : (s.refilling[key] ?? 0)
        guard var list = s.waiters[key], list.count > coming else { return [] }
        let extra = Array(list[coming...])
        list.removeLast(list.count - coming)
        s.waiters[key] = list
        return extra
    }

    /// Fills the pool of `key` before anything is taken from it (server start).
    func prewarm(_ key: PoolKey) {
        state.withLock { $0.keys[key.profileName] = key }
        refill(key)
    }

    /// Tops up the pool of every profile in use (a slot came free).
    func refillAll() {
        for key in state.withLock({ Array($0.keys.values) }) { refill(key) }
    }

    /// Tops the pool of `key` up to its target, in the background.
    func refill(_ key: PoolKey) {
        let wanted = state.withLock { s -> Int in
            guard !s.stopped else { return 0 }
            let have = (s.idle[key]?.count ?? 0) + (s.refilling[key] ?? 0)
            let n = max(0, target - have)
            s.refilling[key, default: 0] += n
            return n
        }
        primeWhenQuiet(key)
        guard wanted > 0 else { return }
        Task.detached(priority: .utility) { [self] in
            for i in 0..<wanted {
                var made: WarmChild?
                do { made = try await make(key, false) } catch {
                    let unserved = state.withLock { s -> [CheckedContinuation<WarmChild?, Never>]? in
                        guard s.stopped else { return nil }
                        s.refilling[key, default: wanted - i] -= wanted - i
                        return Self.unserved(key, in: &s)
                    }
                    if let unserved {
                        for w in unserved { w.resume(returning: nil) }
                        break
                    }
                    logger.warning("warm pool: cannot fork a child ahead of demand; executions fork on demand meanwhile",
                                   metadata: ["profile": "\(key.profileName)", "error": "\(error)"])
                }
                enum Outcome { case kept, handed(CheckedContinuation<WarmChild?, Never>), discarded }
                let (outcome, unserved) = state.withLock { s -> (Outcome, [CheckedContinuation<WarmChild?, Never>]) in
                    s.refilling[key, default: 1] -= 1
                    guard let made, !s.stopped else {
                        if made == nil { s.stats.refillFailures += 1 }
                        return (.discarded, Self.unserved(key, in: &s))
                    }
                    s.stats.spawned += 1
                    if var waiting = s.waiters[key], !waiting.isEmpty {
                        let first = waiting.removeFirst()
                        s.waiters[key] = waiting
                        return (.handed(first), [])
                    }
                    s.idle[key, default: []].append(made)
                    return (.kept, [])
                }
                for w in unserved { w.resume(returning: nil) }
                switch (outcome, made) {
                case (.handed(let waiter), _):
                    waiter.resume(returning: made)
                case (.kept, let made?):
                    // Killed while idle (or its worker died): forget it, and make another.
                    made.child.onExit { [self] in
                        let deaths = state.withLock { s -> Int? in
                            guard let i = s.idle[key]?.firstIndex(where: { $0.child === made.child }) else { return nil }
                            s.idle[key]!.remove(at: i)
                            s.primed.remove(ObjectIdentifier(made.child))
                            s.idleDeaths[key, default: 0] += 1
                            return s.idleDeaths[key]
                        }
                        guard let deaths else { return }
                        retire(made.workdir)
                        let delay = min(5.0, 0.05 * Double(1 << min(deaths, 8)))
                        Task.detached(priority: .utility) { [self] in
                            try? await Task.sleep(for: .seconds(delay))
                            refill(key)
                        }
                    }
                    primeWhenQuiet(key)
                case (_, let made?):
                    discard(made)
                case (_, nil):
                    break
                }
                if made == nil {
                    // No slot or no worker now: give the other reservations back (a slot coming free, or the next
                    // execution, refills again).
                    let rest = wanted - i - 1
                    let unserved = state.withLock { s in
                        s.refilling[key, default: rest] -= rest
                        return Self.unserved(key, in: &s)
                    }
                    for w in unserved { w.resume(returning: nil) }
                    break
                }
            }
        }
    }

    /// Asks one waiting child of `key` to render a throwaway chart once the pool has been quiet (no execution of
    /// it running) for `primeWhenQuietFor`, unless one has been asked already: the pages of one chart (~13 MB) for
    /// the pool, not for each child. The render takes a core for about a chart's time, so it waits for a pause:
    /// back-to-back traffic never has one and is not slowed by it; a chat backend's executions, with a model call
    /// between two of them, find the child primed.
    private func primeWhenQuiet(_ key: PoolKey) {
        guard let quiet = primeWhenQuietFor else { return }
        let seen = state.withLock { s -> Int? in
            guard !s.stopped, (s.running[key] ?? 0) == 0, s.idle[key]?.isEmpty == false, !s.hasAsked(key) else { return nil }
            return s.activity[key] ?? 0
        }
        guard let seen else { return }
        Task.detached(priority: .utility) { [self] in
            try? await Task.sleep(for: quiet)
            primeOne(key, ifActivityIs: seen)
        }
    }

    /// Asks one waiting child of `key` to prime, if the pool has seen no take or finish since `activity` was read.
    private func primeOne(_ key: PoolKey, ifActivityIs activity: Int) {
        state.withLock { s in
            guard !s.stopped, (s.activity[key] ?? 0) == activity, (s.running[key] ?? 0) == 0, !s.hasAsked(key),
                  let w = s.idle[key]?.last(where: { !$0.child.hasExited }) else { return }
            s.primed.insert(ObjectIdentifier(w.child))
            s.stats.primesAsked += 1
            // Under the lock, so no take can hand the child a cell before this frame is on its pipe.
            w.child.prime()
        }
    }

    /// The children waiting now (tests kill them to see the pool recover).
    var idleChildren: [SandboxChild] { state.withLock { $0.idle.values.flatMap { $0.map(\.child) } } }

    /// Kills every waiting child (engine shutdown).
    func drain() {
        let (all, waiting) = state.withLock { s -> ([WarmChild], [CheckedContinuation<WarmChild?, Never>]) in
            s.stopped = true
            defer { s.idle = [:]; s.waiters = [:]; s.primed = [] }
            return (s.idle.values.flatMap { $0 }, s.waiters.values.flatMap { $0 })
        }
        for w in waiting { w.resume(returning: nil) }
        for w in all { discard(w) }
    }

    /// A child that will never run: killed, its /mnt/data removed.
    private func discard(_ w: WarmChild) {
        w.child.kill()
        retire(w.workdir)
    }

    func reopen() { state.withLock { $0.stopped = false } }

}
