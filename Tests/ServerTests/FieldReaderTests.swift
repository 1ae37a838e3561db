import Foundation
import InterpreterCore
@testable import Server
import Testing

/// The one reader of JSON objects: request bodies, the tool routes' bodies and the configuration file, each
/// worded for its audience.
@Suite("FieldReader")
struct FieldReaderTests {
    func request(_ body: String, allowed: Set<String> = ["code", "timeout_s", "files", "limits"]) throws(APIError) -> RequestFields {
        try RequestFields(body: Data(body.utf8), allowed: allowed)
    }

    func apiError(_ body: () throws -> Void) -> APIError? {
        do {
            try body()
            return nil
        } catch {
            return error as? APIError
        }
    }

    @Test func typedFieldsReadAndNullIsAbsent() throws {
        let fields = try request(#"{"code": "print(1)", "timeout_s": 2, "files": ["a", "b"], "limits": null}"#)
        #expect(try fields.requiredString("code") == "print(1)")
        #expect(try fields.number("timeout_s") == 2)
        #expect(try fields.int("timeout_s") == 2)
        #expect(try fields.strings("files") == ["a", "b"])
        #expect(try fields.object("limits", allowed: []) == nil)
        #expect(try fields.bool("absent") == nil)
    }

    @Test func theDocumentMustBeAnObjectOfKnownFields() {
        #expect(apiError { _ = try request("") }?.message == "the request body is empty; send a JSON object")
        #expect(apiError { _ = try request("[1]") }?.message == "the request body must be a JSON object, not an array")
        #expect(apiError { _ = try request("{") }?.message.hasPrefix("the request body is not valid JSON: ") == true)
        let unknown = apiError { _ = try request(#"{"cdoe": "x"}"#) }
        #expect(unknown?.message == #"unknown field "cdoe" (did you mean "code"?); accepted: code, files, limits, timeout_s"#)
        #expect(unknown?.param == "cdoe")
    }

    @Test func aWrongTypeNamesTheFieldAndItsPath() throws {
        let fields = try request(#"{"code": 1, "files": ["a", 2], "limits": {"memory": "x", "cpu": 1}}"#)
        let code = apiError { _ = try fields.requiredString("code") }
        #expect(code?.message == #""code" must be a string, not a number"#)
        #expect(code?.param == "code")
        let element = apiError { _ = try fields.strings("files") }
        #expect(element?.message == #""files[1]" must be a string, not a number"#)
        #expect(element?.param == "files")
        let nested = apiError { _ = try fields.object("limits", allowed: ["memory"]) }
        #expect(nested?.message == #"unknown field "limits.cpu""#)
        let limits = try fields.object("limits", allowed: ["memory", "cpu"])
        #expect(apiError { _ = try limits?.int("memory") }?.message == #""limits.memory" must be an integer, not a string"#)
        #expect(apiError { _ = try fields.requiredString("timeout_s") }?.message == #"missing required field "timeout_s""#)
    }

    @Test func theToolRoutesWordingHasOpenAICodes() throws {
        func tool(_ body: String) throws -> ToolRequestFields {
            try ToolRequestFields(toolBody: Data(body.utf8), allowed: ["call", "conversation_id"])
        }
        let notJSON = apiError { _ = try tool("{") }
        #expect(notJSON?.message == "the request body is not valid JSON" && notJSON?.code == "invalid_json")
        #expect(apiError { _ = try tool("3") }?.message == "the request body must be a JSON object, not number")
        let unknown = apiError { _ = try tool(#"{"conversation": 1}"#) }
        #expect(unknown?.message == #"unknown field "conversation" (accepted: call, conversation_id)"#)
        #expect(unknown?.code == "unknown_field")
        let empty = apiError { _ = try tool(#"{"conversation_id": ""}"#).nonEmptyString("conversation_id") }
        #expect(empty?.message == #""conversation_id" must be a non-empty string, not string"#)
    }

    @Test func theConfigurationWordingNamesTheFileAndKey() throws {
        let wording = ConfigurationWording(source: "c.json", namesKey: true)
        let fields = try FieldReader(object: ["port": "80", "api_keys": "k", "cors_origins": ["a", 1], "host": .null],
                                     wording: wording)
        func failure(_ read: () throws -> Void) throws -> String {
            try #require(throws: ConfigurationError.self) { try read() }.description
        }
        #expect(try failure { _ = try fields.int("port") } == #"c.json: "port": expected an integer, not a string"#)
        #expect(try fields.strings("api_keys", acceptingOne: true) == ["k"])
        #expect(try failure { _ = try fields.strings("cors_origins") } == #"c.json: "cors_origins": expected an array of strings"#)
        #expect(try failure { _ = try fields.string("host", nullable: false) } == #"c.json: "host": expected a string, not null"#)
        #expect(try fields.string("host") == nil)
    }
}
