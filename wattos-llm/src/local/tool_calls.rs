//! Prompt-based tool calling for local models.
//!
//! SmolLM2's GGUF chat template has no tool section, so tools use the convention SmolLM2-Instruct was
//! tuned on (its model card's function-calling prompt): the system prompt lists the tools as JSON
//! inside `<tools>…</tools>` and the model answers with
//! `<tool_call>[{"name": "…", "arguments": {…}}]</tool_call>`. [`parse_tool_calls`] turns such output
//! back into [`ToolCall`]s; a lone object instead of an array, several `<tool_call>` blocks, a
//! missing closing tag, and `"parameters"` instead of `"arguments"` are accepted.

use serde_json::{Value, json};
use wattos_core::llm::{ToolCall, ToolChoice, ToolDefinition};

/// Opening tag of a tool-call block.
pub(crate) const TOOL_CALL_OPEN: &str = "<tool_call>";
/// Closing tag of a tool-call block.
pub(crate) const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// The system-prompt section that offers `tools` under `choice`; empty when no tool may be called.
///
/// ```
/// use serde_json::json;
/// use wattos_core::llm::{ToolChoice, ToolDefinition};
/// let tool = ToolDefinition {
///     name: "get_weather".into(),
///     description: "Current weather for a city".into(),
///     parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
///     strict: None,
/// };
/// let prompt = wattos_llm::local::render_tool_prompt(&[tool], &ToolChoice::Auto);
/// assert!(prompt.contains("<tools>") && prompt.contains("get_weather"));
/// ```
pub fn render_tool_prompt(tools: &[ToolDefinition], choice: &ToolChoice) -> String {
    if tools.is_empty() || *choice == ToolChoice::None {
        return String::new();
    }
    let listed: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    let listed = serde_json::to_string(&listed).unwrap_or_else(|_| "[]".to_owned());
    let rule = match choice {
        ToolChoice::Required => "You must call at least one function.".to_owned(),
        ToolChoice::Tool { name } => format!("You must call the function \"{name}\"."),
        ToolChoice::Auto | ToolChoice::None => {
            "If none of the functions can be used, answer the question directly in plain text."
                .to_owned()
        }
    };
    format!(
        "You are an expert in composing functions. You are given a question and a set of possible \
         functions. Based on the question, you will need to make one or more function/tool calls to \
         achieve the purpose. {rule}\n\n\
         You have access to the following tools:\n<tools>{listed}</tools>\n\n\
         To call functions, the output MUST strictly adhere to the following format, and NO other text \
         MUST be included:\n\
         <tool_call>[{{\"name\": \"func_name1\", \"arguments\": {{\"argument1\": \"value1\"}}}}]</tool_call>"
    )
}

/// Text the assistant turn is pre-filled with so that a required tool call starts right away.
/// `tools` are the tools offered (none when tools are disabled). A required call with a single
/// tool offered names that tool, as a forced choice of it would: small models otherwise copy the
/// example name from the instructions.
pub(crate) fn forced_prefix(choice: Option<&ToolChoice>, tools: &[ToolDefinition]) -> String {
    let named = |name: &str| format!("{TOOL_CALL_OPEN}[{{\"name\": \"{name}\", \"arguments\": ");
    match (choice, tools) {
        (_, []) => String::new(),
        (Some(ToolChoice::Required), [only]) => named(&only.name),
        (Some(ToolChoice::Required), _) => format!("{TOOL_CALL_OPEN}[{{\"name\": \""),
        (Some(ToolChoice::Tool { name }), _) => named(name),
        _ => String::new(),
    }
}

/// An assistant turn's tool calls in the same convention, for replaying history to the model.
pub(crate) fn render_tool_calls(calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        return String::new();
    }
    let listed: Vec<Value> = calls
        .iter()
        .map(|c| {
            let args = serde_json::from_str::<Value>(&c.arguments)
                .unwrap_or_else(|_| Value::String(c.arguments.clone()));
            json!({"name": c.name, "arguments": args})
        })
        .collect();
    format!(
        "{TOOL_CALL_OPEN}{}{TOOL_CALL_CLOSE}",
        serde_json::to_string(&listed).unwrap_or_else(|_| "[]".to_owned())
    )
}

/// Splits model output into plain text and tool calls.
///
/// Returns `None` when the text holds no parseable `<tool_call>` block (it is then plain text).
/// Otherwise returns the text outside the blocks (trimmed, `None` if empty) and the calls, with ids
/// `call_<random>` (unique, like hosted providers' ids).
///
/// ```
/// let out = r#"<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>"#;
/// let (text, calls) = wattos_llm::local::parse_tool_calls(out).unwrap();
/// assert_eq!(text, None);
/// assert_eq!(calls[0].name, "get_weather");
/// assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
/// ```
pub fn parse_tool_calls(output: &str) -> Option<(Option<String>, Vec<ToolCall>)> {
    let mut calls = Vec::new();
    let mut text = String::new();
    let mut rest = output;
    while let Some(open) = rest.find(TOOL_CALL_OPEN) {
        text.push_str(&rest[..open]);
        let body_start = open + TOOL_CALL_OPEN.len();
        let (body, next) = match rest[body_start..].find(TOOL_CALL_CLOSE) {
            Some(close) => (
                &rest[body_start..body_start + close],
                &rest[body_start + close + TOOL_CALL_CLOSE.len()..],
            ),
            None => (&rest[body_start..], ""),
        };
        match parse_block(body) {
            Some(found) => calls.extend(found),
            None => return None,
        }
        rest = next;
    }
    text.push_str(rest);
    if calls.is_empty() {
        return None;
    }
    let calls = calls
        .into_iter()
        .map(|(name, arguments)| ToolCall {
            id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
            name,
            arguments,
        })
        .collect();
    let text = text.trim();
    Some(((!text.is_empty()).then(|| text.to_owned()), calls))
}

/// `(name, arguments JSON)` pairs of one block, or `None` if it is not valid.
fn parse_block(body: &str) -> Option<Vec<(String, String)>> {
    let value: Value = serde_json::from_str(body.trim()).ok()?;
    let items = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => return None,
    };
    items
        .into_iter()
        .map(|item| {
            let name = item.get("name")?.as_str()?.to_owned();
            let args = item
                .get("arguments")
                .or_else(|| item.get("parameters"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let args = match args {
                // Some outputs double-encode the arguments as a JSON string.
                Value::String(s) => serde_json::from_str::<Value>(&s).ok()?,
                other => other,
            };
            args.is_object().then(|| (name, args.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_calls_and_surrounding_text() {
        let out = "Let me check.\n<tool_call>[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, \
                   {\"name\": \"b\", \"arguments\": {}}]</tool_call>";
        let (text, calls) = parse_tool_calls(out).unwrap();
        assert_eq!(text.as_deref(), Some("Let me check."));
        assert_eq!(calls.len(), 2);
        assert!(calls[0].id.starts_with("call_") && calls[0].id != calls[1].id);
        assert_eq!(calls[0].arguments, "{\"x\":1}");
        assert_eq!(calls[1].name, "b");
    }

    #[test]
    fn lenient_forms() {
        let out = "<tool_call>{\"name\": \"a\", \"parameters\": \"{\\\"q\\\": \\\"z\\\"}\"}";
        let (_, calls) = parse_tool_calls(out).unwrap();
        assert_eq!(calls[0].arguments, "{\"q\":\"z\"}");
        let two = "<tool_call>{\"name\":\"a\"}</tool_call><tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>";
        assert_eq!(parse_tool_calls(two).unwrap().1.len(), 2);
    }

    #[test]
    fn plain_or_broken_output_is_not_a_call() {
        assert!(parse_tool_calls("The weather is sunny.").is_none());
        assert!(parse_tool_calls("<tool_call>[{\"name\": ").is_none());
        assert!(parse_tool_calls("<tool_call>[{\"arguments\": {}}]</tool_call>").is_none());
        assert!(parse_tool_calls("<tool_call>[]</tool_call>").is_none());
    }

    #[test]
    fn rendering_round_trips() {
        let calls = vec![ToolCall {
            id: "x".into(),
            name: "lookup".into(),
            arguments: "{\"id\":7}".into(),
        }];
        let (_, parsed) = parse_tool_calls(&render_tool_calls(&calls)).unwrap();
        assert_eq!(parsed[0].name, "lookup");
        assert_eq!(parsed[0].arguments, "{\"id\":7}");
    }

    #[test]
    fn prompt_respects_choice() {
        let tool = ToolDefinition {
            name: "t".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
            strict: None,
        };
        assert!(render_tool_prompt(std::slice::from_ref(&tool), &ToolChoice::None).is_empty());
        assert!(
            render_tool_prompt(std::slice::from_ref(&tool), &ToolChoice::Required)
                .contains("must call")
        );
        assert!(
            forced_prefix(
                Some(&ToolChoice::Tool { name: "t".into() }),
                std::slice::from_ref(&tool)
            )
            .contains("\"t\"")
        );
        assert!(forced_prefix(Some(&ToolChoice::Auto), std::slice::from_ref(&tool)).is_empty());
        assert!(forced_prefix(Some(&ToolChoice::Required), &[]).is_empty());
        assert!(
            forced_prefix(Some(&ToolChoice::Required), std::slice::from_ref(&tool))
                .contains(&format!("\"{}\", \"arguments\"", tool.name))
        );
    }
}
