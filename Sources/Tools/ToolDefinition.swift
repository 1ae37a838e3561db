import Foundation
import InterpreterCore

/// The API a tool definition, a tool call or a tool result is shaped for.
public enum ToolFormat: String, Sendable, CaseIterable {
    /// OpenAI Chat Completions (and every OpenAI-compatible endpoint).
    case openAIChat = "openai-chat"
    /// OpenAI Responses API function tools.
    case openAIResponses = "openai-responses"
    /// Anthropic Messages tool use.
    case anthropic
    /// Model Context Protocol (revision 2025-11-25) `tools/list` entry.
    case mcp
}

/// The one tool codeinterp offers a model: `execute_python`.
public struct ToolDefinition: Sendable, Equatable {
    public static let toolName = "execute_python"

    public var name: String
    public var title: String
    public var description: String
    /// Whether the OpenAI shapes ask for strict mode (the schema then follows its rules: every property is
    /// required, optional ones accept null, no additional properties).
    public var strict: Bool

    /// The tool as described for a sandbox with `limits` (take them from the profile the tool runs under).
    public init(limits: Limits, network: Bool = false, strict: Bool = true) {
        name = Self.toolName
        title = "Run Python in a sandbox"
        self.strict = strict
        description = Self.describe(limits: limits, network: network)
    }

    static func describe(limits: Limits, network: Bool) -> String {
        let seconds = limits.wallSeconds.rounded() == limits.wallSeconds ? String(Int(limits.wallSeconds))
            : String(format: "%.1f", limits.wallSeconds)
        return """
            Runs Python 3 code in a sandbox and returns what it printed (stdout, stderr), the value of the last \
            expression (as in a notebook), the error with its traceback if it raised, figures, and the files it wrote. \
            Preloaded: numpy, pandas, matplotlib, scipy, seaborn, scikit-learn, sympy, openpyxl, PIL (Pillow), reportlab. \
            Files live in /mnt/data, the working directory: files the user uploaded are there, and outputs must be \
            saved there (relative paths land there). \
            \(network ? "Network access is allowed." : "There is no network access: pip install and downloads fail.") \
            Limits per call: \(seconds) s wall time (timeout_s may lower it for one call), \(formatBytes(limits.memoryBytes)) of memory. \
            State persists between calls of the same conversation: variables, imports and files of earlier calls are \
            still there (if the session expired, the result says so and everything must be recreated). \
            Figures shown with plt.show() (or left open) come back as images. \
            To give a file to the user, link it as sandbox:/mnt/data/NAME, e.g. [chart.png](sandbox:/mnt/data/chart.png); \
            those links are turned into download links.
            """
    }

    /// The input schema. Strict: both properties required, `session_id` nullable. Otherwise `session_id` is
    /// optional.
    public func parameters(strict: Bool) -> JSONValue {
        let code: JSONValue = [
            "type": "string",
            "description": "The Python code to run. End with an expression to get its value back.",
        ]
        let sessionDescription = "Only to continue in a session named by an earlier result of this tool outside a "
            + "conversation; leave it out (null) otherwise: the conversation's session is used."
        let timeoutDescription = "A shorter wall-clock limit for this call, in seconds (it can only lower the sandbox's "
            + "limit); null for the default."
        if strict {
            return [
                "type": "object",
                "properties": [
                    "code": code,
                    "session_id": ["type": ["string", "null"], "description": .string(sessionDescription)],
                    "timeout_s": ["type": ["number", "null"], "description": .string(timeoutDescription)],
                ],
                "required": ["code", "session_id", "timeout_s"],
                "additionalProperties": false,
            ]
        }
        return [
            "type": "object",
            "properties": [
                "code": code,
                "session_id": ["type": "string", "description": .string(sessionDescription)],
                "timeout_s": ["type": "number", "exclusiveMinimum": 0, "description": .string(timeoutDescription)],
            ],
            "required": ["code"],
            "additionalProperties": false,
        ]
    }

    /// The tool definition exactly as `format`'s API expects it in its `tools` array.
    public func json(format: ToolFormat) -> JSONValue {
        switch format {
        case .openAIChat:
            var function: [String: JSONValue] = [
                "name": .string(name), "description": .string(description), "parameters": parameters(strict: strict),
            ]
            if strict { function["strict"] = true }
            return ["type": "function", "function": .object(function)]
        case .openAIResponses:
            return [
                "type": "function", "name": .string(name), "description": .string(description),
                "parameters": parameters(strict: strict), "strict": .bool(strict),
            ]
        case .anthropic:
            return ["name": .string(name), "description": .string(description), "input_schema": parameters(strict: false)]
        case .mcp:
            return [
                "name": .string(name), "title": .string(title), "description": .string(description),
                "inputSchema": parameters(strict: false),
                "annotations": [
                    "title": .string(title),
                    // It writes files in its sandbox only; nothing outside changes, nothing is deleted.
                    "readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false,
                ],
            ]
        }
    }
}

func formatBytes(_ bytes: Int64) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) bytes" }
    return value.rounded() == value ? "\(Int(value)) \(units[unit])" : String(format: "%.1f", value) + " " + units[unit]
}
