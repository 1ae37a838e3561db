/// An incremental parser of a `text/event-stream` body, as the HTML standard defines it: events end at a blank
/// line; `data:` lines join with newlines; `event:` names the event (`message` when absent); lines starting with a
/// colon are comments; lines end with LF, CRLF or CR; one space after the colon is dropped.
public struct ServerSentEvents: Sendable {
    public struct Event: Sendable, Equatable {
        public var event: String
        public var data: String
        public var id: String?

        public init(event: String, data: String, id: String? = nil) {
            self.event = event
            self.data = data
            self.id = id
        }
    }

    private var line: [UInt8] = []
    private var afterCR = false
    private var name = ""
    private var data: [String] = []
    private var id: String?
    private var hasData = false

    public init() {}

    /// The events completed by `bytes`.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [Event] where Bytes.Element == UInt8 {
        var events: [Event] = []
        for byte in bytes {
            if afterCR {
                afterCR = false
                if byte == UInt8(ascii: "\n") { continue }
            }
            switch byte {
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                afterCR = byte == UInt8(ascii: "\r")
                if let event = endLine() { events.append(event) }
            default:
                line.append(byte)
            }
        }
        return events
    }

    /// At the end of the stream: the event its last lines started, when the server closed the stream without the
    /// blank line that would end it. The standard discards such an event; model servers that end on `data: [DONE]`
    /// alone are common enough that a client does better to take it.
    public mutating func finish() -> [Event] {
        feed([UInt8(ascii: "\n"), UInt8(ascii: "\n")])
    }

    private mutating func endLine() -> Event? {
        defer { line = [] }
        guard !line.isEmpty else {
            // A blank line dispatches what the event's lines gathered (nothing without data, per the standard).
            defer { name = ""; data = []; hasData = false }
            return hasData ? Event(event: name.isEmpty ? "message" : name, data: data.joined(separator: "\n"), id: id) : nil
        }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        let field = String(decoding: line[..<colon], as: UTF8.self)
        var value = colon < line.endIndex ? line[(colon + 1)...] : []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        let text = String(decoding: value, as: UTF8.self)
        switch field {
        case "event": name = text
        case "data": data.append(text); hasData = true
        case "id" where !text.contains("\0"): id = text
        default: break
        }
        return nil
    }
}
