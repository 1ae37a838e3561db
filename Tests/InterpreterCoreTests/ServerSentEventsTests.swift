import InterpreterCore
import Testing

@Suite struct ServerSentEventsTests {
    @Test func eventsSplitAnywhereComeOutWhole() {
        let stream = Array(": accepted\n\nevent: stdout\ndata: {\"text\":\"a\"}\n\nevent: result\r\ndata: line 1\r\ndata:line 2\r\n\r\ndata: plain\n\n".utf8)
        for cut in 0...stream.count {
            var parser = ServerSentEvents()
            let events = parser.feed(stream[..<cut]) + parser.feed(stream[cut...])
            #expect(events == [
                .init(event: "stdout", data: "{\"text\":\"a\"}", id: nil),
                .init(event: "result", data: "line 1\nline 2", id: nil),
                .init(event: "message", data: "plain", id: nil),
            ], "cut at \(cut)")
        }
    }

    @Test func anEventWithoutDataIsNotDispatchedAndCRAloneEndsALine() {
        var parser = ServerSentEvents()
        #expect(parser.feed(Array("event: ping\n\nid: 7\rdata: x\r\r".utf8)) == [.init(event: "message", data: "x", id: "7")])
    }

    @Test func finishTakesTheEventAStreamEndedWithoutItsBlankLine() {
        var parser = ServerSentEvents()
        #expect(parser.feed(Array("data: a\n\ndata: [DONE]".utf8)) == [.init(event: "message", data: "a")])
        #expect(parser.finish() == [.init(event: "message", data: "[DONE]")])
        #expect(parser.finish() == [])
    }
}
