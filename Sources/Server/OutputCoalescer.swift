import Sandbox

/// Groups what a program prints into the `stdout`/`stderr` events a person reads: a line, or the lines that came
/// together, as soon as it ends; a partial line (a prompt, a progress bar) once it has waited `partialLineDelay`;
/// a very long line in pieces of `maxPendingBytes`; never a UTF-8 sequence split across two events.
///
/// Python writes `print('step', 0)` as four writes ('step', ' ', '0', '\n'), and the engine hands over what each
/// read of the pipe returns: sent as they come, that one line would be four events.
struct OutputCoalescer {
    struct Chunk: Equatable {
        var kind: OutputStreamKind
        var text: String
    }

    /// Below what a person notices, above the gaps between the writes of one `print`.
    static let partialLineDelay: Duration = .milliseconds(50)
    static let maxPendingBytes = 16 * 1024

    private struct Pending {
        var bytes: [UInt8] = []
        /// When the oldest byte still held arrived; nil when nothing sendable is held (at most the start of a
        /// UTF-8 sequence, which waits for the rest of it).
        var since: ContinuousClock.Instant?
    }

    private var stdout = Pending()
    private var stderr = Pending()

    private subscript(kind: OutputStreamKind) -> Pending {
        get { kind == .stdout ? stdout : stderr }
        set { if kind == .stdout { stdout = newValue } else { stderr = newValue } }
    }

    /// When a partial line held now is due to go out, if one is held.
    var deadline: ContinuousClock.Instant? {
        [stdout.since, stderr.since].compactMap { $0 }.min().map { $0 + Self.partialLineDelay }
    }

    /// Takes bytes the program wrote to `kind`; returns the chunks to send now.
    mutating func append(_ kind: OutputStreamKind, _ bytes: [UInt8], at now: ContinuousClock.Instant) -> [Chunk] {
        // What the other stream holds was written first: it goes first, so the two keep their order.
        var chunks = takeSendable(kind == .stdout ? .stderr : .stdout)
        self[kind].bytes += bytes
        if let lineEnd = self[kind].bytes.lastIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            chunks += take(kind, count: lineEnd + 1)
            self[kind].since = nil
        }
        if self[kind].bytes.count >= Self.maxPendingBytes {
            chunks += takeSendable(kind)
        }
        if self[kind].since == nil, UTF8Chunker.completePrefixLength(self[kind].bytes) > 0 {
            self[kind].since = now
        }
        return chunks
    }

    /// The partial lines that have waited long enough.
    mutating func flushDue(at now: ContinuousClock.Instant) -> [Chunk] {
        var chunks: [Chunk] = []
        for kind in [OutputStreamKind.stdout, .stderr] {
            if let since = self[kind].since, since + Self.partialLineDelay <= now { chunks += takeSendable(kind) }
        }
        return chunks
    }

    /// Everything still held, at the end of the output. A stream holding only the start of a UTF-8 sequence
    /// held it since before the other stream's bytes came.
    mutating func finish() -> [Chunk] {
        let order: [OutputStreamKind] = stderr.since == nil && stdout.since != nil ? [.stderr, .stdout] : [.stdout, .stderr]
        var chunks: [Chunk] = []
        for kind in order {
            chunks += take(kind, count: self[kind].bytes.count)
            self[kind].since = nil
        }
        return chunks
    }

    /// All of `kind`'s bytes but the start of a UTF-8 sequence at their end.
    private mutating func takeSendable(_ kind: OutputStreamKind) -> [Chunk] {
        self[kind].since = nil
        return take(kind, count: UTF8Chunker.completePrefixLength(self[kind].bytes))
    }

    private mutating func take(_ kind: OutputStreamKind, count: Int) -> [Chunk] {
        guard count > 0 else { return [] }
        let text = String(decoding: self[kind].bytes[..<count], as: UTF8.self)
        self[kind].bytes.removeFirst(count)
        return [Chunk(kind: kind, text: text)]
    }
}
