import InterpreterCore
import Testing

/// The one framing of every pipe between the engine, the zygote and a child, and the records it carries.
@Suite struct ChildProtocolTests {
    /// Every frame `decoder` has now; throws at the first rejected one.
    private func frames(_ decoder: inout FrameDecoder) throws(FrameError) -> [Frame] {
        var out: [Frame] = []
        while let frame = try decoder.next() { out.append(frame) }
        return out
    }

    private let sample = [
        Frame(kind: .spawn, job: 7, payload: Array("{\"slot\":1}".utf8)),
        Frame(kind: .ack, job: 0xDEAD_BEEF),
        Frame(kind: .outcome, payload: Array(repeating: 0xAB, count: 70_000)),
        Frame(kind: .usage, payload: Array("{\"cpu_ms\":3}".utf8)),
    ]

    @Test func framesSplitAcrossManyFeedsComeOutWhole() throws {
        let bytes = sample.flatMap { $0.encoded() }
        for step in [1, 2, 3, 8, 4096] {
            var decoder = FrameDecoder()
            var decoded: [Frame] = []
            var offset = 0
            while offset < bytes.count {
                decoder.feed(bytes[offset..<min(bytes.count, offset + step)])
                offset += step
                decoded += try frames(&decoder)
            }
            #expect(decoded == sample, "fed \(step) bytes at a time")
            #expect(decoder.bufferedByteCount == 0)
        }
    }

    @Test func severalFramesInOneFeed() throws {
        var decoder = FrameDecoder()
        decoder.feed(sample.flatMap { $0.encoded() })
        #expect(try frames(&decoder) == sample)
        #expect(try decoder.next() == nil)
    }

    @Test func anOversizeLengthIsRejectedWithoutBufferingItsBytes() throws {
        var decoder = FrameDecoder(maxPayload: 1024)
        // A length of 4 GiB: rejected from the header alone; what follows of it is dropped as it arrives.
        decoder.feed([0xFF, 0xFF, 0xFF, 0xFF, FrameKind.outcome.rawValue])
        #expect(throws: FrameError.tooLarge(Int(UInt32.max))) { try decoder.next() }
        #expect(decoder.bufferedByteCount == 0)
        for _ in 0..<64 {
            decoder.feed([UInt8](repeating: 0x41, count: 1 << 16))
            #expect(decoder.bufferedByteCount == 0)
            #expect(try decoder.next() == nil)
        }
        // One byte over the limit is over it; the frame at the limit decodes, and so does the stream after a
        // rejected frame that ends.
        var bounded = FrameDecoder(maxPayload: 16)
        bounded.feed(Frame(kind: .outcome, payload: Array(repeating: 1, count: 17)).encoded())
        bounded.feed(Frame(kind: .outcome, payload: Array(repeating: 2, count: 16)).encoded())
        #expect(throws: FrameError.tooLarge(22)) { try bounded.next() }
        #expect(try frames(&bounded) == [Frame(kind: .outcome, payload: Array(repeating: 2, count: 16))])
    }

    @Test func unknownKindsAndShortLengthsAreSkipped() throws {
        var decoder = FrameDecoder()
        var unknown = Frame(kind: .hello, job: 1, payload: [1, 2, 3]).encoded()
        unknown[4] = 0xEE
        decoder.feed(unknown + [3, 0, 0, 0, 9, 9, 9] + Frame(kind: .kill, job: 2).encoded())
        #expect(throws: FrameError.unknownKind(0xEE)) { try decoder.next() }
        #expect(throws: FrameError.tooShort(3)) { try decoder.next() }
        #expect(try frames(&decoder) == [Frame(kind: .kill, job: 2)])
        // An unknown kind is skipped from its header on, however long it claims to be.
        var large = FrameDecoder()
        large.feed([0x00, 0x00, 0x00, 0x01, 0xEE])
        #expect(throws: FrameError.unknownKind(0xEE)) { try large.next() }
        large.feed([UInt8](repeating: 0, count: (1 << 24) - 1) + Frame(kind: .ack).encoded())
        #expect(try frames(&large) == [Frame(kind: .ack)])
    }

    @Test func aTruncatedStreamYieldsOnlyItsWholeFrames() throws {
        let whole = Frame(kind: .outcome, payload: Array("{\"result\":null}".utf8))
        let partial = Frame(kind: .usage, payload: Array("{\"cpu_ms\":1}".utf8)).encoded()
        for cut in [1, 3, 4, 8, 9, partial.count - 1] {
            var decoder = FrameDecoder()
            decoder.feed(whole.encoded() + partial.prefix(cut))
            #expect(try frames(&decoder) == [whole], "cut after \(cut) bytes")
            #expect(decoder.bufferedByteCount == cut)
        }
    }

    @Test func cellFramesCarryTheCodeAndTheMemoryAllowance() throws {
        let code = "print('é — 日本語 🐍')\r\nx = 1\n"
        let frame = CellCommand(code: code, memoryBytes: 300 << 20).frame
        #expect(frame.kind == .cell)
        #expect(frame.payload.count == 8 + code.utf8.count)
        var decoder = FrameDecoder()
        let bytes = frame.encoded()
        decoder.feed(bytes.prefix(10))
        #expect(try decoder.next() == nil)
        decoder.feed(bytes.dropFirst(10))
        let cell = try #require(try decoder.next().flatMap(CellCommand.init))
        #expect(cell.code == code)
        #expect(cell.memoryBytes == 300 << 20)
        #expect(cell == CellCommand(code: code, memoryBytes: 300 << 20))
        // A memory allowance is never negative; no allowance and no code are a valid cell.
        #expect(CellCommand(code: "", memoryBytes: -5).memoryBytes == 0)
        #expect(CellCommand(CellCommand(code: "", memoryBytes: 1 << 40).frame) == CellCommand(code: "", memoryBytes: 1 << 40))
        #expect(CellCommand(Frame(kind: .cell, payload: [1, 2, 3])) == nil)
        #expect(CellCommand(Frame(kind: .outcome, payload: Array(repeating: 0, count: 8))) == nil)
    }

    @Test func reportRecordsRoundTripAndJunkIsSkipped() {
        let records: [ChildReportRecord] = [.blockedSyscall(101), .signalled(9), .setupFailed("sandbox setup failed at mount: é")]
        var decoder = FrameDecoder(maxPayload: ChildReportRecord.maxPayload)
        var junk = Frame(kind: .signalled, payload: [1, 2]).encoded()  // no i32
        junk += Frame(kind: .outcome, payload: [0]).encoded()          // another channel's kind
        junk += [0xFF, 0xFF, 0x00, 0x00, FrameKind.setupFailed.rawValue]  // too long for a report
        decoder.feed(records[0].frame.encoded() + junk)
        decoder.feed([UInt8](repeating: 0, count: 0xFFFF - 1))
        decoder.feed(records[1].frame.encoded() + records[2].frame.encoded())
        // And a partial one at the end, which is not invented into a record.
        decoder.feed(ChildReportRecord.signalled(15).frame.encoded().dropLast())
        #expect(ChildReportRecord.records(from: &decoder) == records)
        var empty = FrameDecoder()
        #expect(ChildReportRecord.records(from: &empty) == [])
    }

    @Test func theSignalHandlersPrecomputedBytesDecodeToTheirRecords() throws {
        // What the SIGSYS handler does: copy the template, store the call's number at the offset, one write.
        let template = ChildReportRecord.blockedSyscallTemplate
        #expect(template.bytes.count <= 32)  // the handler's preallocated buffer
        for nr: Int32 in [0, 59, 435, -1] {
            var bytes = template.bytes
            withUnsafeBytes(of: nr.littleEndian) { bytes.replaceSubrange(template.numberOffset..<template.numberOffset + 4, with: $0) }
            var decoder = FrameDecoder(maxPayload: ChildReportRecord.maxPayload)
            decoder.feed(bytes)
            #expect(ChildReportRecord.records(from: &decoder) == [.blockedSyscall(nr)])
        }
        // The SIGXCPU handler's frame is written as it is.
        var decoder = FrameDecoder(maxPayload: ChildReportRecord.maxPayload)
        decoder.feed(ChildReportRecord.signalled(24).frame.encoded())
        #expect(ChildReportRecord.records(from: &decoder) == [.signalled(24)])
    }

    @Test func theRuntimesFramesMatchTheSwiftOnes() throws {
        // codeinterp_runtime.py writes these bytes itself (struct.pack("<IBI", ...)).
        #expect(ChildReportRecord.signalled(15).frame.encoded() == [9, 0, 0, 0, 41, 0, 0, 0, 0, 15, 0, 0, 0])
        #expect(Frame(kind: .outcome, payload: Array("{}".utf8)).encoded() == [7, 0, 0, 0, 30, 0, 0, 0, 0] + Array("{}".utf8))
    }

    @Test func childDescriptorsKeepTheirNumbersInTheChild() {
        #expect(ChildDescriptor.allCases.map(\.childFd) == [1, 2, 3, 5, 4])
        #expect(Set(ChildDescriptor.allCases.map(\.childFd)).count == ChildDescriptor.allCases.count)
    }
}
