//! Turns a [`ChatRequest`] into the prompt text a local model sees: tool and JSON instructions in the
//! system turn, tool calls and results replayed in the tool-calling convention, then the chat template.

use wattos_core::llm::{
    ChatRequest, ContentPart, Message, ResponseFormat, ToolChoice, ToolDefinition,
};
use wattos_core::{Error, Result};

use super::chat_template::{ChatTemplate, TemplateMessage};
use super::tool_calls::{forced_prefix, render_tool_calls, render_tool_prompt};

/// The rendered prompt and what generation must do with it.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    /// Full prompt text, ending with the assistant generation prompt and any forced prefix.
    pub(crate) text: String,
    /// Text the assistant turn was pre-filled with (part of the answer).
    pub(crate) forced_prefix: String,
    /// Whether tool calls should be looked for in the output.
    pub(crate) tools_enabled: bool,
    /// Whether the output must be JSON.
    pub(crate) json_output: bool,
}

fn json_instruction(format: Option<&ResponseFormat>) -> Option<String> {
    match format? {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            Some("Respond with a single valid JSON object and nothing else.".to_owned())
        }
        ResponseFormat::JsonSchema { name, schema, .. } => Some(format!(
            "Respond with a single valid JSON object and nothing else. It must match the JSON Schema \
             \"{name}\": {schema}"
        )),
    }
}

/// Builds the prompt for `req`.
///
/// # Errors
/// [`wattos_core::ErrorKind::InvalidInput`] for image content (text-only model) or a template error.
pub(crate) fn build(
    req: &ChatRequest,
    template: &ChatTemplate,
    bos_token: &str,
    eos_token: &str,
) -> Result<Prompt> {
    let tool_choice = req.tool_choice.clone().unwrap_or_default();
    let tools_enabled = !req.tools.is_empty() && tool_choice != ToolChoice::None;
    let mut instructions: Vec<String> = Vec::new();
    if tools_enabled {
        instructions.push(render_tool_prompt(&req.tools, &tool_choice));
    }
    let json_output = !matches!(req.response_format, None | Some(ResponseFormat::Text));
    if let Some(j) = json_instruction(req.response_format.as_ref()) {
        instructions.push(j);
    }

    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    for (i, m) in req.messages.iter().enumerate() {
        let (role, content) = match m {
            Message::System { content } => ("system", content.clone()),
            Message::User { content, .. } => {
                if content
                    .iter()
                    .any(|p| matches!(p, ContentPart::Image { .. }))
                {
                    return Err(Error::invalid_field(
                        format!("messages[{i}].content"),
                        "this local model accepts text only",
                    ));
                }
                ("user", m.text())
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let calls = render_tool_calls(tool_calls);
                let text = match (content.as_deref().unwrap_or(""), calls.as_str()) {
                    (t, "") => t.to_owned(),
                    ("", c) => c.to_owned(),
                    (t, c) => format!("{t}\n{c}"),
                };
                ("assistant", text)
            }
            Message::Tool {
                content, is_error, ..
            } => {
                let text = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                ("tool", text)
            }
        };
        messages.push(TemplateMessage { role, content });
    }

    if !instructions.is_empty() {
        let extra = instructions.join("\n\n");
        match messages.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{extra}", first.content);
            }
            _ => messages.insert(
                0,
                TemplateMessage {
                    role: "system",
                    content: extra,
                },
            ),
        }
    }

    let mut text = template
        .render(&messages, bos_token, eos_token)
        .map_err(Error::invalid_input)?;
    let offered: &[ToolDefinition] = if tools_enabled { &req.tools } else { &[] };
    let forced_prefix = forced_prefix(req.tool_choice.as_ref(), offered);
    text.push_str(&forced_prefix);
    Ok(Prompt {
        text,
        forced_prefix,
        tools_enabled,
        json_output,
    })
}
