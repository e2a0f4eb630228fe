// Prompt caching as the providers document it, so that tests can check the cost batchling
// reports against what a provider would bill. The first request with a cacheable prefix writes
// it to the cache; later ones with the same prefix (same model) read it. State lives in
// `state.promptCache` (cleared by `reset()`); sync calls and batch lines share it.
import { estimateTokens, sha256Hex } from './common.mjs';

/** Prefixes shorter than this are not cached (Anthropic: 1024 tokens for most models; OpenAI:
 * prompts of 1024 tokens and more). */
export const MIN_CACHEABLE_TOKENS = 1024;
/** OpenAI reports cache hits in 128-token increments. */
const OPENAI_CACHE_STEP = 128;

/**
 * Anthropic: the prefix is everything up to and including the last block carrying
 * `cache_control`, in the order tools, system, messages. Its tokens are written (5-minute
 * cache; 1-hour with `ttl: "1h"`) the first time and read afterwards; `input_tokens` is what
 * remains after the last cache breakpoint.
 */
export function anthropicPromptCache(state, body, answer) {
  if (answer.status < 200 || answer.status >= 300 || !answer.body?.usage) return;
  const parts = [];
  let end = -1;
  let hour = false;
  const visit = (block) => {
    parts.push(block);
    if (block && typeof block === 'object' && block.cache_control) {
      end = parts.length;
      hour = block.cache_control.ttl === '1h';
    }
  };
  for (const tool of Array.isArray(body.tools) ? body.tools : []) visit(tool);
  if (Array.isArray(body.system)) body.system.forEach(visit);
  else if (typeof body.system === 'string') visit(body.system);
  for (const message of Array.isArray(body.messages) ? body.messages : []) {
    if (Array.isArray(message?.content)) message.content.forEach(visit);
    else visit(message?.content);
  }
  if (end < 0) return;
  const prefix = JSON.stringify(parts.slice(0, end));
  const tokens = estimateTokens(prefix);
  if (tokens < MIN_CACHEABLE_TOKENS) return;
  const usage = answer.body.usage;
  const total = usage.input_tokens;
  const key = `anthropic\n${body.model}\n${sha256Hex(prefix)}`;
  const cached = Math.min(tokens, total);
  usage.input_tokens = total - cached;
  if (state.promptCache.has(key)) {
    usage.cache_read_input_tokens = cached;
    usage.cache_creation_input_tokens = 0;
    usage.cache_creation = { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 };
  } else {
    state.promptCache.set(key, true);
    usage.cache_read_input_tokens = 0;
    usage.cache_creation_input_tokens = cached;
    usage.cache_creation = {
      ephemeral_5m_input_tokens: hour ? 0 : cached,
      ephemeral_1h_input_tokens: hour ? cached : 0,
    };
  }
}

/**
 * OpenAI (chat completions): automatic caching of prompts of at least 1024 tokens. The prefix
 * is the conversation before its last message; once seen, later requests report it (rounded
 * down to 128-token steps) as `prompt_tokens_details.cached_tokens`. Writes are not reported
 * (nor billed apart).
 */
export function openaiPromptCache(state, endpoint, body, answer) {
  if (endpoint !== '/v1/chat/completions') return;
  if (answer.status < 200 || answer.status >= 300 || !answer.body?.usage) return;
  const usage = answer.body.usage;
  if (!Array.isArray(body.messages) || body.messages.length < 2 || usage.prompt_tokens < MIN_CACHEABLE_TOKENS) return;
  const prefix = JSON.stringify(body.messages.slice(0, -1));
  const tokens = estimateTokens(prefix);
  if (tokens < MIN_CACHEABLE_TOKENS) return;
  const key = `openai\n${body.model}\n${sha256Hex(prefix)}`;
  if (state.promptCache.has(key)) {
    const cached = Math.min(usage.prompt_tokens, Math.floor(tokens / OPENAI_CACHE_STEP) * OPENAI_CACHE_STEP);
    usage.prompt_tokens_details = { ...usage.prompt_tokens_details, cached_tokens: cached };
  } else {
    state.promptCache.set(key, true);
  }
}
