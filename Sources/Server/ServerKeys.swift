import Foundation

public enum ServerKeys {
    /// The API key in `<data dir>/api-key`, generated (mode 0600) on first use. Returns whether it was created.
    public static func loadOrCreateAPIKey(dataDirectory: String) throws -> (key: String, created: Bool) {
        let path = dataDirectory + "/api-key"
        if let data = FileManager.default.contents(atPath: path) {
            let key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !key.isEmpty && !key.contains(where: \.isWhitespace) { return (key, false) }
        }
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        let key = "ci-" + String((0..<40).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
        try writePrivateFile(path: path, bytes: Array((key + "\n").utf8))
        return (key, true)
    }
}
