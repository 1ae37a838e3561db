@testable import Server
import Testing

/// Output arrives in pieces that can cut a character in two: the text handed on never holds half of one.
@Suite("UTF8Chunker")
struct UTF8ChunkerTests {
    @Test func aCharacterCutAcrossTwoChunksComesOutWhole() {
        var chunker = UTF8Chunker()
        let euro = Array("€".utf8)  // three bytes
        #expect(chunker.append([UInt8(ascii: "a")] + euro.prefix(1)) == "a")
        #expect(chunker.append(Array(euro[1...1])) == "")
        #expect(chunker.append(Array(euro[2...]) + Array("b".utf8)) == "€b")
        #expect(chunker.flush() == "")
    }

    @Test func fourByteSequencesAndCompleteTextPassAtOnce() {
        var chunker = UTF8Chunker()
        #expect(chunker.append(Array("x🙂".utf8)) == "x🙂")
        #expect(UTF8Chunker.completePrefixLength([]) == 0)
    }

    @Test func whatCannotBecomeACharacterIsNotHeldBack() {
        var chunker = UTF8Chunker()
        // Stray continuation bytes: no lead byte can complete them, so they go on (as U+FFFD) instead of waiting.
        #expect(chunker.append([0x80, 0x80, 0x80, 0x80, 0x80]) == String(repeating: "\u{FFFD}", count: 5))
        // An unfinished sequence at the very end is handed on by flush.
        #expect(chunker.append([0xF0, 0x9F]) == "")
        #expect(chunker.flush() == "\u{FFFD}")
    }
}
