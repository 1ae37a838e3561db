import InterpreterCore
import Testing

@Suite("Hex")
struct HexTests {
    @Test func bytesAreWrittenAsTwoLowercaseDigitsEach() {
        #expect([UInt8]().lowercaseHex == "")
        #expect([0x00, 0x0f, 0xab, 0xff].lowercaseHex == "000fabff")
    }

    @Test func hexReadsBackInEitherCaseAndRefusesWhatIsNotHex() {
        #expect([UInt8](hex: "000fABff") == [0x00, 0x0f, 0xab, 0xff])
        #expect([UInt8](hex: "") == [])
        #expect([UInt8](hex: "abc") == nil)
        #expect([UInt8](hex: "0g") == nil)
        #expect([UInt8](hex: "+1") == nil)
    }
}
