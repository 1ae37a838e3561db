/// "Did you mean" for every unknown name a user can mistype: profile keys, actions, architectures and system calls,
/// configuration keys, request fields.
public enum Suggestion {
    /// The candidate closest to `word` (case, "_" and "-" ignored first, then edit distance with transpositions),
    /// or nil when nothing is close enough to be a plausible typo.
    public static func closest(to word: String, among candidates: [String]) -> String? {
        func normalized(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" } }
        let n = normalized(word)
        if let exact = candidates.first(where: { normalized($0) == n }) { return exact }
        let w = Array(word.lowercased())
        var best: (String, Int)?
        for c in candidates {
            let d = distance(w, Array(c.lowercased()))
            if best == nil || d < best!.1 { best = (c, d) }
        }
        guard let (candidate, d) = best else { return nil }
        let threshold = max(1, min(3, (w.count + 1) / 3))
        return d <= threshold ? candidate : nil
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }

    /// " (did you mean \"x\"?)" or "".
    public static func didYouMean(_ word: String, among candidates: [String]) -> String {
        if let s = closest(to: word, among: candidates) { return " (did you mean \"\(s)\"?)" }
        return ""
    }
}
