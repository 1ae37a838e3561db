import Foundation
import InterpreterCore
import Tools

/// What the bundled demo model does with a message that attaches a file (a CSV or Excel upload from the page):
/// instead of its script, it reads that file, shows its first rows, summarises and charts its columns, and links
/// the chart. So a person trying codeinterp offline sees their own data go through the sandbox.
enum AttachmentTour {
    /// The attachment of the newest user message, and how many assistant turns have answered it so far; nil when
    /// that message attaches nothing.
    static func attachment(in items: [JSONValue]) -> (name: String, answered: Int)? {
        guard let last = items.lastIndex(where: { $0["type"]?.stringValue == "message" && $0["role"]?.stringValue == "user" }),
              let name = (items[last]["content"]?.arrayValue ?? [])
                  .first(where: { $0["type"]?.stringValue == "input_file" })?["filename"]?.stringValue else { return nil }
        let since = Items.chatMessages(instructions: nil, items: Array(items[(last + 1)...]))
        return (name, since.filter { $0["role"]?.stringValue == "assistant" }.count)
    }

    /// The turns that explore `/mnt/data/<name>`: read it, chart it, answer.
    static func turns(for name: String) -> [AssistantTurn] {
        let path = python("/mnt/data/" + name)
        let lower = name.lowercased()
        let read: String
        if lower.hasSuffix(".xlsx") || lower.hasSuffix(".xls") || lower.hasSuffix(".xlsm") {
            read = "df = pd.read_excel(\(path))"
        } else if lower.hasSuffix(".json") {
            read = "df = pd.read_json(\(path))"
        } else {
            // The delimiter is sniffed: semicolons and tabs are as common as commas.
            read = "df = pd.read_csv(\(path), sep=None, engine=\"python\")"
        }
        let chart = chartName(for: name)
        let load = """
            import pandas as pd

            \(read)
            print(f"{len(df)} rows, {len(df.columns)} columns: {', '.join(map(str, df.columns))}")
            df.head(10)
            """
        let plot = """
            import matplotlib.pyplot as plt

            numeric = df.select_dtypes("number")
            if numeric.empty:
                print("There are no numeric columns to chart.")
            else:
                numeric.plot(figsize=(7, 4), marker="o", title=\(python(name)))
                plt.tight_layout()
                plt.savefig(\(python(chart)), dpi=100)
            df.describe(include="all")
            """
        return [
            AssistantTurn(text: "Let me read `\(name)`.", toolCalls: [call("call_read", load)]),
            AssistantTurn(text: "Now a summary of each column, and a chart of the numeric ones.", toolCalls: [call("call_chart", plot)]),
            AssistantTurn(text: "Those are the first rows of `\(name)` and a summary of its columns. The chart of its numeric "
                + "columns: [\(chart)](sandbox:/mnt/data/\(chart)).\n\n(I am the bundled demo model: I answer every upload "
                + "this way. Configure `upstream_base_url` for a real model.)", toolCalls: []),
        ]
    }

    /// `sales.csv` → `sales-chart.png`, in characters that need no quoting anywhere.
    static func chartName(for name: String) -> String {
        let stem = name.split(separator: ".").dropLast().joined(separator: ".")
        let safe = String((stem.isEmpty ? name : stem).map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" })
        return safe + "-chart.png"
    }

    /// A Python string literal (file names have no control characters: `FileNames.sanitize` refuses them).
    static func python(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func call(_ id: String, _ code: String) -> JSONValue {
        ["id": .string(id), "type": "function",
         "function": ["name": .string(ResponseRequest.codeToolName), "arguments": .string(JSONValue.object(["code": .string(code)]).serialized())]]
    }
}
