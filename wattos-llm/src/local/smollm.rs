//! SmolLM2-135M-Instruct (or any llama-architecture GGUF with a byte-level BPE vocabulary) as a
//! [`ChatModel`], on the quantized Llama forward pass in [`super::llama`].

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{Mutex, mpsc};
use wattos_core::llm::{
    Capabilities, ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason,
    ResponseFormat, StreamAccumulator, ToolCallDelta, ToolChoice, ToolDefinition, Usage,
};
use wattos_core::{Error, RequestContext, Result};

use super::chat_template::ChatTemplate;
use super::constrain::TokenIndex;
use super::error::{self, LoadError};
use super::generate::{Constraint, EndReason, GenOutcome, GenParams, generate};
use super::gguf_tokenizer::GgufTokenizer;
use super::grammar::Grammar;
use super::llama::{Llama, LlamaShape};
use super::prompt::{self, Prompt};
use super::queue::WaitQueue;
use super::tool_calls::{TOOL_CALL_CLOSE, parse_tool_calls};

/// Path of the model inside the WattOS model cache (see `scripts/fetch-models.sh`).
pub const SMOLLM_CACHE_FILE: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Deltas buffered between the generating thread and the stream consumer.
const STREAM_BUFFER: usize = 64;

/// The weight format used at run time.
///
/// The cached GGUF is Q4_1, which candle multiplies without SIMD kernels; requantizing at load
/// (about a second) to a type with AVX2/NEON kernels makes decoding several times faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WeightFormat {
    /// 8-bit blocks: fast and nearly lossless from Q4_1 (the default).
    #[default]
    Q8_0,
    /// 4-bit blocks: smaller, slightly faster, a little less accurate.
    Q4_0,
    /// Keep the file's own formats.
    AsStored,
}

/// Options for [`SmolLm::load`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SmolLmOptions {
    /// Run-time weight format.
    pub weights: WeightFormat,
    /// Name reported by [`ChatModel::name`] and in responses.
    pub name: String,
    /// Output limit when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// Temperature when a request sets none (SmolLM2's recommended 0.2; 0 is greedy).
    pub default_temperature: f32,
    /// Nucleus sampling when a request sets none (SmolLM2's recommended 0.9).
    pub default_top_p: f32,
    /// Requests that may wait for (or hold) the model at once; more are refused with 503 and a
    /// `Retry-After`, as is a request whose expected wait exceeds its deadline (see
    /// [`WaitQueue`](super::WaitQueue)). Default [`DEFAULT_MAX_QUEUE`](super::DEFAULT_MAX_QUEUE).
    pub max_queue: usize,
}

impl Default for SmolLmOptions {
    fn default() -> Self {
        Self {
            weights: WeightFormat::default(),
            name: "smollm2-135m-instruct".to_owned(),
            default_max_tokens: 512,
            default_temperature: 0.2,
            default_top_p: 0.9,
            max_queue: super::queue::DEFAULT_MAX_QUEUE,
        }
    }
}

impl SmolLmOptions {
    /// Sets the run-time weight format.
    pub fn with_weights(mut self, weights: WeightFormat) -> Self {
        self.weights = weights;
        self
    }

    /// Sets the reported model name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// A local chat model: SmolLM2-135M-Instruct from a GGUF file, on the CPU.
///
/// - Tokenizer and chat template come from the GGUF metadata (`tokenizer.ggml.*`,
///   `tokenizer.chat_template`; ChatML if the template is absent).
/// - Sampling: `temperature` (0 = greedy), `top_p`, `seed` (same seed, same output), `max_tokens`,
///   `stop`, `presence_penalty`, `frequency_penalty`. Without a seed a random one is used.
/// - Streaming is native: each decoded piece is a [`ChatDelta::Text`], then `Usage` and `Finish`.
///   Dropping the stream cancels generation at the next token.
/// - Tools are offered in the system prompt and parsed from `<tool_call>` output (see
///   [`crate::local::parse_tool_calls`]). Tool calls are decoded under a grammar built from the
///   tools' JSON Schemas: with `tool_choice` required or naming a tool from the first answer token,
///   otherwise from the moment the model opens a `<tool_call>` block. Each call then names an offered
///   tool and its arguments are valid JSON matching that tool's schema (types, enums, required and
///   known properties, nested objects and arrays; see the grammar notes in the module source).
/// - `response_format` JSON schema / JSON object answers are decoded under the same kind of grammar,
///   so they always parse and match the schema's supported keywords.
/// - One generation at a time per loaded model: requests queue fairly on an async mutex and run on a
///   blocking thread, never on the async runtime. Load several instances for parallelism.
/// - Threads: candle's quantized kernels use a process-wide spin-waiting pool sized by
///   `CANDLE_NUM_THREADS` (default: physical cores). On a host busy with other work, set
///   `CANDLE_NUM_THREADS=1`: decoding syncs the pool hundreds of times per token and spinning
///   workers that lose their core stall every step.
///
/// ```no_run
/// use futures::StreamExt;
/// use wattos_core::llm::{ChatDelta, ChatModel, ChatRequest, Message};
/// use wattos_core::{RequestContext, TenantId};
/// use wattos_llm::local::{SmolLm, SmolLmOptions, default_models_dir};
///
/// # async fn run() -> wattos_core::Result<()> {
/// let model = SmolLm::from_models_dir(default_models_dir(), SmolLmOptions::default())?;
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let req = ChatRequest::new("smollm2", vec![Message::user("What is the capital of France?")])
///     .with_max_tokens(32)
///     .with_temperature(0.0);
/// println!("{}", model.chat(&ctx, req.clone()).await?.text());
///
/// let mut stream = model.chat_stream(&ctx, req).await?;
/// while let Some(delta) = stream.next().await {
///     if let ChatDelta::Text { text } = delta? {
///         print!("{text}");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SmolLm {
    shared: Arc<Shared>,
}

struct Shared {
    options: SmolLmOptions,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    context_window: usize,
    token_index: TokenIndex,
    model: Arc<Mutex<Llama>>,
    queue: WaitQueue,
}

impl std::fmt::Debug for SmolLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolLm")
            .field("options", &self.shared.options)
            .field("context_window", &self.shared.context_window)
            .field("tokenizer", &self.shared.tokenizer)
            .field("template", &self.shared.template)
            .finish_non_exhaustive()
    }
}

impl SmolLm {
    /// Loads a GGUF file, requantizing its weights to `options.weights`. Blocking (about a second);
    /// call it from `spawn_blocking` inside an async runtime.
    ///
    /// # Errors
    /// [`LoadError::MissingFile`] or [`LoadError::CorruptFile`] naming the file.
    pub fn load(
        path: impl AsRef<Path>,
        options: SmolLmOptions,
    ) -> std::result::Result<Self, LoadError> {
        let path = path.as_ref();
        error::require_file(path)?;
        let corrupt = |e: &dyn std::fmt::Display| LoadError::corrupt(path, e);
        let mut file = File::open(path).map_err(|e| corrupt(&e))?;
        let content = Content::read(&mut file).map_err(|e| corrupt(&e))?;
        let tokenizer = GgufTokenizer::from_gguf(&content).map_err(|e| corrupt(&e))?;
        let template = ChatTemplate::from_gguf(&content).map_err(|e| corrupt(&e))?;
        let trained_context = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(DEFAULT_CONTEXT, |n| n as usize);
        let context_window = trained_context.clamp(1, MAX_CONTEXT);

        let device = Device::Cpu;
        let target = match options.weights {
            WeightFormat::AsStored => None,
            WeightFormat::Q8_0 => Some(GgmlDType::Q8_0),
            WeightFormat::Q4_0 => Some(GgmlDType::Q4_0),
        };
        let model = LlamaShape::from_metadata(&content.metadata)
            .and_then(|shape| {
                let mut tensors = read_tensors(&content, &mut file, target, &device)?;
                Llama::load(shape, context_window, &device, |name| {
                    tensors
                        .remove(name)
                        .ok_or_else(|| candle_core::Error::Msg(format!("tensor {name} is missing")))
                })
            })
            .map_err(|e| corrupt(&e))?;
        if tokenizer.vocab_size() == 0 {
            return Err(LoadError::corrupt(path, "tokenizer.ggml.tokens is empty"));
        }
        let token_index = TokenIndex::new(&tokenizer);
        Ok(Self {
            shared: Arc::new(Shared {
                queue: WaitQueue::new(options.name.clone(), options.max_queue),
                options,
                tokenizer,
                template,
                context_window,
                token_index,
                model: Arc::new(Mutex::new(model)),
            }),
        })
    }

    /// Loads `smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf` from the WattOS model cache.
    ///
    /// # Errors
    /// As for [`SmolLm::load`].
    pub fn from_models_dir(
        dir: impl AsRef<Path>,
        options: SmolLmOptions,
    ) -> std::result::Result<Self, LoadError> {
        Self::load(Self::file_in(dir), options)
    }

    /// The file [`SmolLm::from_models_dir`] reads.
    pub fn file_in(dir: impl AsRef<Path>) -> PathBuf {
        dir.as_ref().join(SMOLLM_CACHE_FILE)
    }

    /// Context window in tokens (prompt plus answer).
    pub fn context_window(&self) -> usize {
        self.shared.context_window
    }

    /// Whether the chat template came from the model file (`false`: the ChatML fallback).
    pub fn uses_model_chat_template(&self) -> bool {
        self.shared.template.is_from_model()
    }

    /// Number of tokens `text` encodes to (no template applied).
    ///
    /// # Errors
    /// Internal error if tokenization fails.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        self.shared
            .tokenizer
            .encode(text)
            .map(|ids| ids.len())
            .map_err(|e| error::inference(&self.shared.options.name, e))
    }

    /// Renders the request exactly as the model will see it (template, tool and JSON instructions).
    ///
    /// # Errors
    /// As for [`ChatModel::chat`] before generation starts.
    pub fn render_prompt(&self, req: &ChatRequest) -> Result<String> {
        req.validate()?;
        self.prompt(req).map(|p| p.text)
    }

    fn prompt(&self, req: &ChatRequest) -> Result<Prompt> {
        let t = &self.shared.tokenizer;
        prompt::build(req, &self.shared.template, &t.bos_token, &t.eos_token)
    }

    fn params(&self, ctx: &RequestContext, req: &ChatRequest, prompt: &Prompt) -> GenParams {
        let o = &self.shared.options;
        GenParams {
            max_tokens: req.max_tokens.unwrap_or(o.default_max_tokens).max(1) as usize,
            temperature: f64::from(req.temperature.unwrap_or(o.default_temperature)),
            top_p: Some(f64::from(req.top_p.unwrap_or(o.default_top_p))),
            seed: req.seed.unwrap_or_else(|| fastrand::u64(..)),
            stop: req.stop.clone(),
            presence_penalty: req.presence_penalty.unwrap_or(0.0),
            frequency_penalty: req.frequency_penalty.unwrap_or(0.0),
            deadline: ctx.deadline(),
            capture_tool_calls: prompt.tools_enabled,
            forced_prefix: prompt.forced_prefix.clone(),
            constraint: constraint(req, prompt),
        }
    }
}

/// The grammar a request's answer must follow: its tool calls when tools are offered, else its JSON
/// response format.
fn constraint(req: &ChatRequest, prompt: &Prompt) -> Option<Constraint> {
    if prompt.tools_enabled {
        let offered: Vec<ToolDefinition> = match &req.tool_choice {
            Some(ToolChoice::Tool { name }) => req
                .tools
                .iter()
                .filter(|t| &t.name == name)
                .cloned()
                .collect(),
            _ => req.tools.clone(),
        };
        if offered.is_empty() {
            return None;
        }
        return Some(Constraint::ToolCalls(Arc::new(Grammar::tool_calls(
            &offered,
            TOOL_CALL_CLOSE,
        ))));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            Some(Constraint::Json(Arc::new(Grammar::from_schema(schema))))
        }
        Some(ResponseFormat::JsonObject) => Some(Constraint::Json(Arc::new(Grammar::from_schema(
            &json!({"type": "object"}),
        )))),
        _ => None,
    }
}

/// Context window when the GGUF does not say (`llama.context_length`).
const DEFAULT_CONTEXT: usize = 2048;
/// Upper bound on the context window (RoPE tables and attention grow with it).
const MAX_CONTEXT: usize = 32_768;

/// Reads every tensor, converting quantized ones to `target` (float tensors such as norms stay as
/// they are; `None` keeps the stored types).
fn read_tensors(
    content: &Content,
    file: &mut File,
    target: Option<GgmlDType>,
    device: &Device,
) -> candle_core::Result<HashMap<String, QTensor>> {
    let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let q = content.tensor(file, name, device)?;
        let q = match (target, q.dtype()) {
            (None, _) | (_, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) => q,
            (Some(t), dtype) if dtype == t => q,
            (Some(t), _) => QTensor::quantize(&q.dequantize(device)?, t)?,
        };
        tensors.insert(name.clone(), q);
    }
    Ok(tensors)
}

/// Turns the end of a generation into the final deltas (tool calls, validation, usage, finish).
fn finish_deltas(
    outcome: GenOutcome,
    prompt: &Prompt,
    input_tokens: u64,
    model_name: &str,
) -> Vec<Result<ChatDelta>> {
    let mut out = Vec::new();
    let mut reason = match outcome.reason {
        EndReason::EndOfTurn | EndReason::StopSequence | EndReason::Cancelled => FinishReason::Stop,
        EndReason::Length => FinishReason::Length,
    };
    if let Some(captured) = &outcome.captured {
        match parse_tool_calls(captured) {
            Some((_, calls)) => {
                for (index, call) in calls.into_iter().enumerate() {
                    out.push(Ok(ChatDelta::ToolCall(ToolCallDelta {
                        index,
                        id: Some(call.id),
                        name: Some(call.name),
                        arguments: call.arguments,
                    })));
                }
                reason = FinishReason::ToolCalls;
            }
            None => out.push(Ok(ChatDelta::Text {
                text: captured.clone(),
            })),
        }
    }
    if prompt.json_output && reason != FinishReason::ToolCalls && reason != FinishReason::Length {
        let text = outcome.text.trim();
        let text = text
            .strip_prefix("```json")
            .or_else(|| text.strip_prefix("```"))
            .and_then(|t| t.strip_suffix("```"))
            .unwrap_or(text);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(text.trim()) {
            out.push(Err(Error::upstream(
                model_name,
                None,
                false,
                format!("the model's answer is not valid JSON ({e})"),
            )));
            return out;
        }
    }
    out.push(Ok(ChatDelta::Usage(Usage {
        input_tokens,
        output_tokens: outcome.output_tokens,
        cached_input_tokens: 0,
    })));
    out.push(Ok(ChatDelta::Finish { reason }));
    out
}

#[async_trait]
impl ChatModel for SmolLm {
    fn name(&self) -> &str {
        &self.shared.options.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            // Prompt-based tool choice; call syntax and arguments enforced by constrained decoding.
            tools: true,
            // Enforced by constrained decoding.
            json_schema: true,
            vision: false,
            context_window: u32::try_from(self.shared.context_window).ok(),
            max_output_tokens: u32::try_from(self.shared.context_window).ok(),
        }
    }

    async fn chat(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        let mut stream = self.chat_stream(ctx, req).await?;
        let mut acc = StreamAccumulator::new(self.name());
        while let Some(delta) = stream.next().await {
            acc.push(delta?);
        }
        acc.finish()
    }

    async fn chat_stream(&self, ctx: &RequestContext, req: ChatRequest) -> Result<ChatStream> {
        req.validate()?;
        ctx.check_deadline()?;
        let this = self.clone();
        let name = self.shared.options.name.clone();

        // Render and tokenize off the runtime, and reject prompts that do not fit before streaming.
        let prepared = {
            let this = this.clone();
            let req = req.clone();
            tokio::task::spawn_blocking(move || -> Result<(Prompt, Vec<u32>)> {
                let prompt = this.prompt(&req)?;
                let ids = this
                    .shared
                    .tokenizer
                    .encode(&prompt.text)
                    .map_err(|e| error::inference(&this.shared.options.name, e))?;
                Ok((prompt, ids))
            })
            .await
            .map_err(|e| error::join(&name, e))??
        };
        let (prompt, prompt_ids) = prepared;
        let window = self.shared.context_window;
        if prompt_ids.len() + 1 > window {
            return Err(Error::context_length_exceeded(format!(
                "the prompt has {} tokens; {name} accepts at most {} (context window {window}) \
                 and needs room for at least one answer token",
                prompt_ids.len(),
                window - 1
            )));
        }
        let params = self.params(ctx, &req, &prompt);

        // One generation at a time. Join the bounded queue (refused at once when the expected wait
        // does not fit the deadline), then wait for the model without blocking the runtime, never
        // past the deadline.
        let ticket = self.shared.queue.join(ctx.deadline())?;
        let lock = Arc::clone(&self.shared.model).lock_owned();
        let guard = match WaitQueue::wait_until(ctx.deadline()) {
            Some(until) => tokio::time::timeout_at(until.into(), lock)
                .await
                .map_err(|_| self.shared.queue.deadline_error())?,
            None => lock.await,
        };
        let (tx, rx) = mpsc::channel::<Result<ChatDelta>>(STREAM_BUFFER);
        let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
        let start = ChatDelta::Start {
            id,
            model: name.clone(),
        };
        tokio::task::spawn_blocking(move || {
            let mut model = guard;
            let began = std::time::Instant::now();
            if tx.blocking_send(Ok(start)).is_err() {
                return;
            }
            let shared = &this.shared;
            let mut emit = |text: String| tx.blocking_send(Ok(ChatDelta::Text { text })).is_ok();
            let result = generate(
                &mut model,
                &shared.tokenizer,
                &shared.token_index,
                &name,
                shared.context_window,
                &prompt_ids,
                &params,
                &mut emit,
            );
            ticket.record(began.elapsed());
            let tail = match result {
                Ok(outcome) if outcome.reason == EndReason::Cancelled => return,
                Ok(outcome) => finish_deltas(outcome, &prompt, prompt_ids.len() as u64, &name),
                Err(e) => vec![Err(e)],
            };
            for item in tail {
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        });
        Ok(tokio_stream_from(rx))
    }
}

/// A [`ChatStream`] over the receiving end of the generation channel.
fn tokio_stream_from(mut rx: mpsc::Receiver<Result<ChatDelta>>) -> ChatStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
