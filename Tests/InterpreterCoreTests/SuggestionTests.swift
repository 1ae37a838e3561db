import InterpreterCore
import Testing

/// The one "did you mean" of profiles, configuration files and request bodies.
@Suite("Suggestion")
struct SuggestionTests {
    @Test(arguments: [
        ("netwrok", ["name", "network"], "network"),  // a transposition is one edit
        ("defaultaction", ["defaultAction"], "defaultAction"),  // case is ignored
        ("rate-limit-burst", ["rate_limit_per_minute", "rate_limit_burst"], "rate_limit_burst"),  // so are - and _
        ("rate_limit_per_minut", ["port", "rate_limit_per_minute"], "rate_limit_per_minute"),
        ("prot", ["host", "port"], "port"),
        ("SCMP_ACT_ALOW", ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"], "SCMP_ACT_ALLOW"),
    ])
    func aPlausibleTypoGetsItsName(word: String, candidates: [String], expected: String) {
        #expect(Suggestion.closest(to: word, among: candidates) == expected)
        #expect(Suggestion.didYouMean(word, among: candidates) == " (did you mean \"\(expected)\"?)")
    }

    @Test func somethingElseEntirelyGetsNoSuggestion() {
        #expect(Suggestion.closest(to: "zzzzzz", among: ["name", "network"]) == nil)
        // Short words allow one edit only: "foo" is not a typo of "port".
        #expect(Suggestion.closest(to: "foo", among: ["port", "host"]) == nil)
        #expect(Suggestion.closest(to: "anything", among: []) == nil)
        #expect(Suggestion.didYouMean("zzzzzz", among: ["name"]) == "")
    }

    @Test func theFirstOfEquallyCloseCandidatesWins() {
        #expect(Suggestion.closest(to: "cat", among: ["bat", "hat"]) == "bat")
    }
}
