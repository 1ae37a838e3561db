/// Turns byte chunks into text without splitting a UTF-8 sequence across two pieces.
public struct UTF8Chunker: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    public mutating func append(_ bytes: [UInt8]) -> String {
        pending += bytes
        let cut = Self.completePrefixLength(pending)
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    public mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }

    /// The length of the longest prefix that does not end inside a multi-byte sequence.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        var i = n - 1
        var continuation = 0
        while i >= 0, i >= n - 4 {
            let b = bytes[i]
            if b & 0xC0 == 0x80 {
                continuation += 1
                i -= 1
                continue
            }
            let length = b & 0x80 == 0 ? 1 : b & 0xE0 == 0xC0 ? 2 : b & 0xF0 == 0xE0 ? 3 : b & 0xF8 == 0xF0 ? 4 : 1
            return length > continuation + 1 ? i : n
        }
        return n
    }
}
