//! Renders a conversation with the model's own Jinja chat template (GGUF `tokenizer.chat_template`),
//! falling back to ChatML when the file has none.

use candle_core::quantized::gguf_file::Content;
use minijinja::{Environment, ErrorKind, context};
use serde::Serialize;

/// ChatML, used only when the GGUF carries no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + \
    message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}\
    {{ '<|im_start|>assistant\n' }}{% endif %}";

const TEMPLATE_NAME: &str = "chat";

/// One message as chat templates see it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TemplateMessage {
    pub(crate) role: &'static str,
    pub(crate) content: String,
}

/// A compiled chat template.
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    from_model: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("from_model", &self.from_model)
            .finish_non_exhaustive()
    }
}

fn raise_exception(message: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// The template in `content`'s metadata, or ChatML if there is none.
    ///
    /// # Errors
    /// A message when the model's template does not compile.
    pub(crate) fn from_gguf(content: &Content) -> Result<Self, String> {
        let source = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let from_model = source.is_some();
        Self::compile(source.unwrap_or_else(|| CHATML.to_owned()), from_model)
    }

    fn compile(source: String, from_model: bool) -> Result<Self, String> {
        let mut env = Environment::new();
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| format!("tokenizer.chat_template does not compile: {e}"))?;
        Ok(Self { env, from_model })
    }

    /// Whether the template came from the model file (rather than the ChatML fallback).
    pub(crate) fn is_from_model(&self) -> bool {
        self.from_model
    }

    /// Renders `messages` followed by the assistant generation prompt.
    ///
    /// # Errors
    /// The template's own error (for example `raise_exception` on an unsupported role order).
    pub(crate) fn render(
        &self,
        messages: &[TemplateMessage],
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| e.to_string())?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => bos_token,
                eos_token => eos_token,
            })
            .map_err(|e| format!("chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &'static str, content: &str) -> TemplateMessage {
        TemplateMessage {
            role,
            content: content.to_owned(),
        }
    }

    #[test]
    fn chatml_fallback_renders_generation_prompt() {
        let t = ChatTemplate::compile(CHATML.to_owned(), false).unwrap();
        let out = t
            .render(&[msg("system", "Be brief."), msg("user", "Hi")], "", "")
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_surfaces_as_error() {
        let t = ChatTemplate::compile("{{ raise_exception('no system role') }}".to_owned(), true)
            .unwrap();
        let err = t.render(&[msg("user", "x")], "", "").unwrap_err();
        assert!(err.contains("no system role"), "{err}");
    }
}
