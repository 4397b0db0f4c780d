//! The token loop: prefill, sample, decode bytes to text, honour stop sequences, limits and deadline.
//! Runs on a blocking thread; text pieces leave through a callback that reports whether the consumer
//! still listens (a dropped stream cancels generation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use wattos_core::{Error, Result};

use super::constrain::{TokenIndex, mask_logits};
use super::error;
use super::gguf_tokenizer::{GgufTokenizer, Utf8Stream};
use super::grammar::{Grammar, Matcher};
use super::llama::Llama;
use super::stop::StopScanner;
use super::tool_calls::TOOL_CALL_OPEN;

/// Prompt tokens fed to the model per forward pass (bounds attention memory on long prompts).
const PREFILL_CHUNK: usize = 256;

/// Sampling and limits for one generation.
#[derive(Debug, Clone)]
pub(crate) struct GenParams {
    pub(crate) max_tokens: usize,
    /// 0 means greedy.
    pub(crate) temperature: f64,
    pub(crate) top_p: Option<f64>,
    pub(crate) seed: u64,
    pub(crate) stop: Vec<String>,
    pub(crate) presence_penalty: f32,
    pub(crate) frequency_penalty: f32,
    pub(crate) deadline: Option<Instant>,
    /// Look for `<tool_call>` and capture what follows instead of streaming it.
    pub(crate) capture_tool_calls: bool,
    /// Answer text the prompt already ends with (a forced tool-call prefix).
    pub(crate) forced_prefix: String,
    /// Grammar the output must follow.
    pub(crate) constraint: Option<Constraint>,
}

/// Constrained decoding for one generation.
#[derive(Debug, Clone)]
pub(crate) enum Constraint {
    /// The whole answer is one JSON document of this grammar.
    Json(Arc<Grammar>),
    /// Every tool-call block follows this grammar from just after `<tool_call>`: from the first
    /// answer token when the forced prefix opens the block, otherwise from the moment the model opens
    /// one.
    ToolCalls(Arc<Grammar>),
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The model ended its turn.
    EndOfTurn,
    /// A stop sequence matched.
    StopSequence,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The consumer went away.
    Cancelled,
}

/// The result of a finished loop.
#[derive(Debug)]
pub(crate) struct GenOutcome {
    pub(crate) reason: EndReason,
    /// Full answer text (forced prefix included, cut at a stop sequence).
    pub(crate) text: String,
    /// Text from the first `<tool_call>` on, which was not emitted.
    pub(crate) captured: Option<String>,
    pub(crate) output_tokens: u64,
}

/// Runs generation for `prompt_ids` (already checked against the context window).
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate(
    model: &mut Llama,
    tokenizer: &GgufTokenizer,
    token_index: &TokenIndex,
    model_name: &str,
    context_window: usize,
    prompt_ids: &[u32],
    params: &GenParams,
    emit: &mut dyn FnMut(String) -> bool,
) -> Result<GenOutcome> {
    let fail = |e: candle_core::Error| error::inference(model_name, e);
    let started = Instant::now();
    let device = Device::Cpu;
    let markers: &[&str] = if params.capture_tool_calls {
        &[TOOL_CALL_OPEN]
    } else {
        &[]
    };
    let mut scanner = StopScanner::new(&params.stop, markers);
    let mut utf8 = Utf8Stream::default();
    let temperature = (params.temperature > 0.0).then_some(params.temperature);
    let mut sampler = LogitsProcessor::new(params.seed, temperature, params.top_p);
    let mut counts: HashMap<u32, u32> = HashMap::new();
    // The grammar in force (if any) and whether a tool-call grammar was already tried.
    let mut matcher: Option<Matcher<'_>> = None;
    let mut tool_grammar_tried = false;
    match &params.constraint {
        Some(Constraint::Json(g)) => matcher = Some(g.matcher()),
        Some(Constraint::ToolCalls(g)) => {
            if let Some(at) = params.forced_prefix.find(TOOL_CALL_OPEN) {
                tool_grammar_tried = true;
                let mut m = g.matcher();
                if m.push_all(&params.forced_prefix.as_bytes()[at + TOOL_CALL_OPEN.len()..]) {
                    matcher = Some(m);
                }
            }
        }
        None => {}
    }

    let mut reason = EndReason::Length;
    let mut output_tokens = 0u64;
    let first = scanner.push(&params.forced_prefix);
    if !first.emit.is_empty() && !emit(first.emit) {
        reason = EndReason::Cancelled;
    }

    if reason != EndReason::Cancelled {
        // Prefill in chunks; the logits of the last chunk predict the first answer token.
        let mut logits = None;
        for (i, chunk) in prompt_ids.chunks(PREFILL_CHUNK).enumerate() {
            let input = Tensor::new(chunk, &device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(fail)?;
            logits = Some(model.forward(&input, i * PREFILL_CHUNK).map_err(fail)?);
        }
        let mut logits = logits
            .ok_or_else(|| Error::invalid_input("the prompt is empty"))?
            .squeeze(0)
            .map_err(fail)?;
        let mut position = prompt_ids.len();

        loop {
            if let Some(deadline) = params.deadline
                && Instant::now() >= deadline
            {
                return Err(Error::timeout(
                    format!("{model_name} generation"),
                    started.elapsed(),
                ));
            }
            if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
                logits = penalise(&logits, &counts, params).map_err(fail)?;
            }
            if let Some(m) = &matcher {
                let mut values = logits.to_vec1::<f32>().map_err(fail)?;
                if !mask_logits(&mut values, m, tokenizer, token_index) {
                    return Err(error::inference(
                        model_name,
                        "constrained decoding found no token that fits the grammar",
                    ));
                }
                let n = values.len();
                logits = Tensor::from_vec(values, n, &device).map_err(fail)?;
            }
            let next = sampler.sample(&logits).map_err(fail)?;
            if tokenizer.is_end_of_generation(next) {
                reason = EndReason::EndOfTurn;
                break;
            }
            output_tokens += 1;
            *counts.entry(next).or_default() += 1;
            let bytes = tokenizer.bytes_of(next);
            if let Some(m) = &mut matcher {
                // The mask only let through tokens the matcher accepts.
                m.push_all(bytes);
            }
            let piece = utf8.push(bytes);
            let scan = scanner.push(&piece);
            if matcher.is_none()
                && !tool_grammar_tried
                && let Some(Constraint::ToolCalls(g)) = &params.constraint
                && let Some(at) = scanner.capture_start()
            {
                // The model opened a tool call: constrain the rest of it.
                tool_grammar_tried = true;
                let mut m = g.matcher();
                let after = &scanner.text().as_bytes()[at + TOOL_CALL_OPEN.len()..];
                if m.push_all(after) && m.push_all(utf8.pending()) {
                    matcher = Some(m);
                }
            }
            if !scan.emit.is_empty() && !emit(scan.emit) {
                reason = EndReason::Cancelled;
                break;
            }
            if scan.stopped {
                reason = EndReason::StopSequence;
                break;
            }
            if matcher.as_ref().is_some_and(Matcher::is_done) {
                reason = EndReason::EndOfTurn;
                break;
            }
            if output_tokens as usize >= params.max_tokens || position + 1 >= context_window {
                reason = EndReason::Length;
                break;
            }
            let input = Tensor::new(&[next], &device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(fail)?;
            logits = model
                .forward(&input, position)
                .and_then(|l| l.squeeze(0))
                .map_err(fail)?;
            position += 1;
        }
    }

    if reason != EndReason::Cancelled && reason != EndReason::StopSequence {
        let tail = utf8.finish();
        if !tail.is_empty() {
            let scan = scanner.push(&tail);
            if !scan.emit.is_empty() && !emit(scan.emit) {
                reason = EndReason::Cancelled;
            }
        }
    }
    let captured = scanner
        .capture_start()
        .map(|at| scanner.text()[at..].to_owned());
    if captured.is_none() && reason != EndReason::Cancelled {
        let rest = scanner.flush();
        if !rest.is_empty() && !emit(rest) {
            reason = EndReason::Cancelled;
        }
    }
    tracing::debug!(
        model = model_name,
        output_tokens,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "local generation finished"
    );
    Ok(GenOutcome {
        reason,
        text: scanner.text().to_owned(),
        captured,
        output_tokens,
    })
}

/// OpenAI-style presence and frequency penalties on raw logits.
fn penalise(
    logits: &Tensor,
    counts: &HashMap<u32, u32>,
    params: &GenParams,
) -> candle_core::Result<Tensor> {
    let mut values = logits.to_vec1::<f32>()?;
    for (&token, &n) in counts {
        if let Some(v) = values.get_mut(token as usize) {
            *v -= params.presence_penalty + params.frequency_penalty * n as f32;
        }
    }
    Tensor::from_vec(values, logits.shape(), logits.device())
}
