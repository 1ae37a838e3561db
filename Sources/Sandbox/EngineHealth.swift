extension ExecutionEngine {
    /// Whether a zygote is running now. False before the first start, and from the moment one dies until the next
    /// execution (or `start()`) replaces it.
    public var workerRunning: Bool {
        state.withLock { $0.worker?.isAlive ?? false }
    }
}
