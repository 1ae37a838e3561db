import Sandbox
@testable import Server
import Testing

/// What a streamed execution's `stdout`/`stderr` events hold, fed the writes a program makes, on a clock the
/// test moves by hand.
@Suite("SSE output: a line or a short burst per event")
struct OutputCoalescerTests {
    let start = ContinuousClock.now

    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func onePrintIsOneEventNotOnePerWrite() {
        // print('step', 0) writes 'step', ' ', '0' and '\n' one after another.
        var output = OutputCoalescer()
        var chunks: [OutputCoalescer.Chunk] = []
        for piece in ["step", " ", "0", "\n"] { chunks += output.append(.stdout, bytes(piece), at: start) }
        #expect(chunks == [.init(kind: .stdout, text: "step 0\n")])
        #expect(output.deadline == nil)
        #expect(output.finish().isEmpty)
    }

    @Test func linesGoAtOnceAndTheUnfinishedRestWaits() {
        var output = OutputCoalescer()
        #expect(output.append(.stdout, bytes("a\nb\nc"), at: start) == [.init(kind: .stdout, text: "a\nb\n")])
        #expect(output.deadline == start + OutputCoalescer.partialLineDelay)
        #expect(output.append(.stdout, bytes("d\n"), at: start + .milliseconds(1)) == [.init(kind: .stdout, text: "cd\n")])
    }

    @Test func aPartialLineGoesOutOnceItHasWaited() {
        var output = OutputCoalescer()
        #expect(output.append(.stdout, bytes("Loading"), at: start).isEmpty)
        #expect(output.append(.stdout, bytes("..."), at: start + .milliseconds(10)).isEmpty)
        #expect(output.flushDue(at: start + .milliseconds(30)).isEmpty)
        // The wait counts from the first byte held, not the last.
        let due = start + OutputCoalescer.partialLineDelay
        #expect(output.deadline == due)
        #expect(output.flushDue(at: due) == [.init(kind: .stdout, text: "Loading...")])
        #expect(output.deadline == nil)
    }

    @Test func aProgressBarRedrawnWithCarriageReturnsIsNotHeldBack() {
        var output = OutputCoalescer()
        #expect(output.append(.stderr, bytes("\r 10%"), at: start) == [.init(kind: .stderr, text: "\r")])
        #expect(output.append(.stderr, bytes("\r 20%"), at: start) == [.init(kind: .stderr, text: " 10%\r")])
    }

    @Test func stdoutAndStderrKeepTheOrderTheyWereWrittenIn() {
        var output = OutputCoalescer()
        var chunks = output.append(.stdout, bytes("Result: "), at: start)
        chunks += output.append(.stderr, bytes("warning: slow\n"), at: start)
        chunks += output.append(.stdout, bytes("42\n"), at: start)
        #expect(chunks == [.init(kind: .stdout, text: "Result: "), .init(kind: .stderr, text: "warning: slow\n"),
                           .init(kind: .stdout, text: "42\n")])
    }

    @Test func aCharacterSplitAcrossReadsIsNeverSplitAcrossEvents() {
        var output = OutputCoalescer()
        let euro = bytes("€")  // three bytes
        #expect(output.append(.stdout, bytes("price ") + euro.prefix(1), at: start).isEmpty)
        #expect(output.flushDue(at: start + OutputCoalescer.partialLineDelay) == [.init(kind: .stdout, text: "price ")])
        // Only the start of the sequence is held: nothing to wait for until the rest comes.
        #expect(output.deadline == nil)
        #expect(output.append(.stdout, Array(euro.dropFirst()) + bytes("5\n"), at: start + .seconds(1))
                == [.init(kind: .stdout, text: "€5\n")])
    }

    @Test func aVeryLongLineGoesOutInPieces() {
        var output = OutputCoalescer()
        let chunks = output.append(.stdout, Array(repeating: UInt8(ascii: "x"), count: OutputCoalescer.maxPendingBytes), at: start)
        #expect(chunks.map(\.text.count) == [OutputCoalescer.maxPendingBytes])
        #expect(output.deadline == nil)
    }

    @Test func theEndSendsWhateverIsLeft() {
        var output = OutputCoalescer()
        _ = output.append(.stdout, bytes(">>> "), at: start)
        #expect(output.finish() == [.init(kind: .stdout, text: ">>> ")])
    }
}
