import Foundation
import InterpreterCore
import Seccomp
import Logging

extension ExecutionEngine {
    /// Spawns a zygote and waits until it has preloaded: the configured modules, then those the profiles ask for
    /// (`preload`). A module that fails to import is in the hello's `failedPreloads` (logged here, shown by
    /// `codeinterp doctor`), not fatal.
    func launchWorker(logger: Logger) async throws -> (WorkerProcess, WorkerHello) {
        let worker = try WorkerProcess.spawn(
            executable: configuration.workerExecutable,
            arguments: ["--control-fd", "3", "--slots", String(configuration.sessionSlotRange.upperBound),
                        "--uid-base", String(configuration.uidBase),
                        "--preload", preloadModules(logger: logger).joined(separator: ","),
                        "--mpl-config-dir", configuration.dataDirectory + "/mplconfig",
                        "--packages", PythonPackages(dataDirectory: configuration.dataDirectory).site],
            logPath: configuration.dataDirectory + "/logs/worker.log")
        let hello: WorkerHello
        do { hello = try await worker.hello() } catch {
            worker.terminate()
            throw EngineError(.workerFailed, "\(error); see \(configuration.dataDirectory)/logs/worker.log")
        }
        var metadata: Logger.Metadata = ["pid": "\(worker.pid)", "startup_ms": "\(hello.startupMs)",
                                         "threads": "\(hello.threads)", "failed_preloads": "\(hello.failedPreloads)",
                                         "huge_pages_mb": "\((hello.hugePageBytes ?? 0) >> 20)"]
        if hello.failedPreloads.isEmpty {
            logger.info("worker ready", metadata: metadata)
        } else {
            metadata["hint"] = "a preloaded module did not import: executions import it themselves (or fail to)"
            logger.warning("worker ready, some preloads failed", metadata: metadata)
        }
        return (worker, hello)
    }

    /// The configured preloads, then every profile's `preload` (the profiles of the profile directories and those
    /// loaded by path so far), each module once. A profile that does not load adds nothing here (executions under
    /// it report why).
    func preloadModules(logger: Logger) -> [String] {
        var names = SandboxProfile.available(searching: configuration.profileDirectories)
        names += state.withLock { Array($0.profiles.keys) }.filter { !names.contains($0) }.sorted()
        var modules = configuration.preload
        for name in names {
            guard let profile = try? SandboxProfile.load(name, searching: configuration.profileDirectories) else { continue }
            for module in profile.preload where !modules.contains(module) { modules.append(module) }
        }
        return modules
    }

    /// Replaces the zygote with a new one (the operator's packages or the profiles' preloads changed) without
    /// failing anything: executions already running finish in the old zygote, every later one forks from the new
    /// one, and the warm pools refill from it. A session's live interpreter stays in the old zygote (its variables
    /// are kept) until it ends; the old zygote stops once nothing of it is left. Without a running zygote this does
    /// nothing: the next execution starts one, which sees the change.
    public func restartWorker(logger: Logger) async throws {
        try await startLock.withLock {
            guard let old = state.withLock({ $0.worker }), old.isAlive else { return }
            let (worker, hello) = try await launchWorker(logger: logger)
            // The filters the old zygote had, so that the pools' refills (which do not load any) find them.
            for (_, filter, _) in state.withLock({ Array($0.profiles.values) }) where old.hasFilter(filter.key) {
                try? worker.loadFilter(FilterLoad(key: filter.key, bpf: filter.bpf))
            }
            old.retire()
            state.withLock { s in
                s.worker = worker
                s.hello = hello
                s.retiredWorkers.append(old)
            }
            // Warm children of the old zygote are never handed out again (`workerIsAlive`); these go now.
            pool.drain()
            sessionPool.drain()
            pool.reopen()
            sessionPool.reopen()
            pool.refillAll()
            sessionPool.refillAll()
            logger.info("worker replaced", metadata: ["old_pid": "\(old.pid)", "pid": "\(worker.pid)",
                                                      "old_children": "\(old.childCount)"])
            Task.detached(priority: .utility) { [weak self] in
                while old.isAlive && old.childCount > 0 { try? await Task.sleep(for: .milliseconds(200)) }
                // Gone from the list: the engine's shutdown has it (or had it) and stops it.
                guard let self, self.state.withLock({ s in s.retiredWorkers.firstIndex { $0 === old }.map { s.retiredWorkers.remove(at: $0) } }) != nil
                else { return }
                old.terminate()
                logger.info("old worker stopped", metadata: ["pid": "\(old.pid)"])
            }
        }
    }
}
