import NIOPosix

/// Runs blocking work (file copies, fsyncs, SQLite writes that may wait on another writer) on NIO's thread pool,
/// off Swift concurrency's threads: there are as many of those as cores, so on a 2-core host one fsync there
/// stalls half the server. Not cancelled with its caller: work that started storing a result finishes it.
public func blockingIO<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await Task { try await NIOThreadPool.singleton.runIfActive(body) }.value
}
