import InterpreterCore
import Testing

/// The engine's side of a child's pipes: what the child writes and what the engine hands it.
@Suite struct ChildProtocolTests {
    @Test func cellMessagesCarryTheCodeAndTheMemoryAllowance() {
        let message = CellMessage.encode("print('é')", memoryBytes: 300 << 20)
        #expect(message.count == CellMessage.headerSize + "print('é')".utf8.count)
        let (length, memory) = CellMessage.decodeHeader(Array(message.prefix(CellMessage.headerSize)))
        #expect(length == "print('é')".utf8.count)
        #expect(memory == 300 << 20)
        #expect(String(decoding: message.dropFirst(CellMessage.headerSize), as: UTF8.self) == "print('é')")
        let empty = CellMessage.decodeHeader(Array(CellMessage.encode("", memoryBytes: -5).prefix(CellMessage.headerSize)))
        #expect(empty.length == 0 && empty.memoryBytes == 0)
    }

    @Test func reportRecordsAreParsedAndJunkStopsTheParse() {
        var bytes: [UInt8] = [UInt8(ascii: "S")]
        withUnsafeBytes(of: Int32(101).littleEndian) { bytes += $0 }
        bytes += [UInt8(ascii: "K"), 9]
        #expect(ChildReportRecord.parse(bytes) == [.blockedSyscall(101), .signalled(9)])
        #expect(ChildReportRecord.parse(Array("Esandbox setup failed at mount".utf8)) == [.setupFailed("sandbox setup failed at mount")])
        // A partial record, or bytes user code wrote that are no record, end the parse without inventing one.
        #expect(ChildReportRecord.parse([UInt8(ascii: "S"), 1, 2]) == [])
        #expect(ChildReportRecord.parse([UInt8(ascii: "K"), 9, UInt8(ascii: "x"), UInt8(ascii: "K"), 15]) == [.signalled(9)])
        #expect(ChildReportRecord.parse([]) == [])
    }

    @Test func childDescriptorsKeepTheirNumbersInTheChild() {
        #expect(ChildDescriptor.allCases.map(\.childFd) == [1, 2, 3, 5, 4])
        #expect(Set(ChildDescriptor.allCases.map(\.childFd)).count == ChildDescriptor.allCases.count)
    }
}
