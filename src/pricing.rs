//! Token prices and the cost of one answer.
//!
//! Money is counted in integer **pico-USD** (10⁻¹² USD). A price in pico-USD per token is the
//! same number as micro-USD per million tokens, so every price a provider publishes (per
//! million tokens, at most six decimals: $0.005 / MTok and up) is held exactly, and the cost
//! of an answer is exact integer arithmetic (`u128`, saturating) with a single rounding, to
//! micro-USD, at the very end. Floating point would drift when millions of small costs are
//! summed into counters; nano-USD per token could not hold $0.0375 / MTok.
//!
//! A model the table does not know is *unpriced* ([`lookup`] returns `None`): it costs
//! nothing and must be counted as unpriced, never priced by a guess. The OpenAI-compatible
//! presets' models are listed under their provider's name (`groq/openai/gpt-oss-120b`).
//! Deployments can set or correct prices in the gateway config with LiteLLM's field names
//! ([`PriceOverride`], [`resolve`]).

use crate::usage::Usage;

/// The date the built-in prices were taken from the providers' price lists.
pub const PRICES_AS_OF: &str = "2026-11-22";

/// Pico-USD in one micro-USD.
const PICO_PER_MICRO: u128 = 1_000_000;

/// The largest override accepted, in USD per token ($10,000 per million tokens): anything
/// larger is a per-million price written where LiteLLM expects a per-token one.
const MAX_USD_PER_TOKEN: f64 = 0.01;

/// Price of one upstream model, in pico-USD (10⁻¹² USD) per token.
///
/// Pico-USD per token equals micro-USD per million tokens: $2.50 / MTok is `2_500_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    /// Input tokens not served from or written to the prompt cache.
    pub input: u64,
    /// Output tokens other than reasoning.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache (the shortest retention's write price).
    pub cache_write: u64,
    /// Input tokens written to Anthropic's 1-hour cache; equal to `cache_write` where a
    /// provider has no such cache.
    pub cache_write_1h: u64,
    /// Reasoning tokens; equal to `output` unless a provider prices them apart.
    pub reasoning: u64,
}

/// Exact cost of `usage` at `price`, in pico-USD.
///
/// `prompt_tokens` includes the cache reads and writes and `completion_tokens` includes the
/// reasoning tokens ([`Usage`]), so each token is priced once:
/// `(prompt − cache_read − cache_write) × input + cache_read × cache_read_price +
/// cache_write × cache_write_price + (completion − reasoning) × output +
/// reasoning × reasoning_price`. The counts reported apart are trusted and the remainders
/// saturate at zero, so inconsistent counts (more cached than prompt tokens) never
/// underflow, and no token is priced twice.
pub fn cost_pico_usd(usage: &Usage, price: &Price) -> u128 {
    let uncached = usage
        .prompt_tokens
        .saturating_sub(usage.cache_read_tokens)
        .saturating_sub(usage.cache_write_tokens);
    let visible_output = usage
        .completion_tokens
        .saturating_sub(usage.reasoning_tokens);
    let long_writes = usage.cache_write_1h_tokens.min(usage.cache_write_tokens);
    let short_writes = usage.cache_write_tokens - long_writes;
    [
        (uncached, price.input),
        (usage.cache_read_tokens, price.cache_read),
        (short_writes, price.cache_write),
        (long_writes, price.cache_write_1h),
        (visible_output, price.output),
        (usage.reasoning_tokens, price.reasoning),
    ]
    .iter()
    .fold(0u128, |sum, &(tokens, per_token)| {
        sum.saturating_add(u128::from(tokens) * u128::from(per_token))
    })
}

/// Cost of `usage` at `price` in micro-USD, rounded to the nearest (halves up), saturating
/// at `u64::MAX`: the unit the gateway's cost counters add up.
///
/// One rounding per answer: an answer cheaper than half a micro-USD counts 0 (while its
/// model still counts as priced).
pub fn cost_micro_usd(usage: &Usage, price: &Price) -> u64 {
    let micro = cost_pico_usd(usage, price).saturating_add(PICO_PER_MICRO / 2) / PICO_PER_MICRO;
    u64::try_from(micro).unwrap_or(u64::MAX)
}

/// A cost a provider reports in USD as micro-USD (rounded to the nearest); `None` for a
/// negative or non-finite figure.
pub fn micro_usd(usd: f64) -> Option<u64> {
    // A float cast saturates: more than u64::MAX micro-USD reads as u64::MAX.
    (usd.is_finite() && usd >= 0.0).then(|| (usd * 1e6).round() as u64)
}

/// Cost of `usage` at `price` in USD, for logs and display (not for summing).
pub fn cost_usd(usage: &Usage, price: &Price) -> f64 {
    cost_pico_usd(usage, price) as f64 / 1e12
}

/// Whether the table lists `model` as an embedding model (`Some(false)`: a chat model;
/// `None`: not listed).
pub fn is_embedding_model(model: &str) -> Option<bool> {
    find(model).map(|r| r.embedding)
}

/// The built-in price of an upstream model, or `None` when it is unpriced.
///
/// Exact name first (ASCII case-insensitive, a leading `models/` ignored); then the longest
/// known name followed only by a date or version suffix: `-20250929`, `@20250929`,
/// `-2024-08-06`, `-001` or `-latest`, so `claude-sonnet-4-5-20250929` is priced as
/// `claude-sonnet-4-5` and `gpt-4o-mini-2024-07-18` as `gpt-4o-mini`. Any other tail
/// (`gpt-4o-audio-preview`, `claude-opus-4-9`) is a different model and stays unpriced.
pub fn lookup(model: &str) -> Option<Price> {
    find(model).map(Rates::price)
}

fn find(model: &str) -> Option<Rates> {
    find_listed(model)
        .or_else(|| find_listed(without_geography(model)?))
        .or_else(|| find_listed(bedrock_name(model)?))
        .map(Row::rates)
}

/// A Bedrock model id without its inference profile's geography (`us.cohere.embed-v4:0`
/// → `cohere.embed-v4:0`), for the models listed with their version.
fn without_geography(model: &str) -> Option<&str> {
    let (geo, rest) = model.trim().split_once('.')?;
    GEOGRAPHIES.contains(&geo).then_some(rest)
}

/// The geographies of Bedrock's inference profiles.
const GEOGRAPHIES: [&str; 8] = ["us", "eu", "apac", "global", "jp", "au", "ca", "us-gov"];

/// A Bedrock model id as the table lists it: the inference profile's geography
/// (`us.`, `eu.`, `global.`, ...) and the `-v1:0` version removed, Claude under Anthropic's
/// own name (`us.anthropic.claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5-20250929`),
/// the other families with their vendor (`amazon.nova-pro`).
fn bedrock_name(model: &str) -> Option<&str> {
    let mut name = without_geography(model).unwrap_or(model.trim());
    if let Some((head, version)) = name.rsplit_once("-v") {
        let (major, minor) = version.split_once(':').unwrap_or((version, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(major) && digits(minor) {
            name = head;
        }
    }
    let name = name.strip_prefix("anthropic.").unwrap_or(name);
    (name != model && !name.is_empty()).then_some(name)
}

fn find_listed(model: &str) -> Option<Row> {
    let name = model.trim();
    let name = name.strip_prefix("models/").unwrap_or(name).as_bytes();
    let lower = |b: &u8| b.to_ascii_lowercase();
    if let Ok(i) = TABLE.binary_search_by(|(key, _)| key.bytes().cmp(name.iter().map(lower))) {
        return TABLE.get(i).map(|(_, row)| *row);
    }
    TABLE
        .iter()
        .filter(|(key, _)| {
            let key = key.as_bytes();
            name.len() > key.len()
                && name
                    .split_at_checked(key.len())
                    .is_some_and(|(head, tail)| {
                        head.eq_ignore_ascii_case(key) && is_version_suffix(tail)
                    })
        })
        .max_by_key(|(key, _)| key.len())
        .map(|(_, row)| *row)
}

/// `-20250929`, `@20250929`, `-2024-08-06`, `-001`, `-latest`: snapshots of one model that
/// share its price.
fn is_version_suffix(tail: &[u8]) -> bool {
    let Some((&sep, rest)) = tail.split_first() else {
        return false;
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    (sep == b'-' || sep == b'@')
        && match rest.len() {
            3 | 8 => digits(rest),
            10 => matches!(
                rest,
                [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1]
                    if digits(&[*y0, *y1, *y2, *y3, *m0, *m1, *d0, *d1])
            ),
            6 => rest.eq_ignore_ascii_case(b"latest"),
            _ => false,
        }
}

/// Per-deployment price fields from `litellm_params`, in USD per token as LiteLLM writes
/// them (`input_cost_per_token: 0.000003` is $3 per million tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PriceOverride {
    /// `input_cost_per_token`.
    pub input_cost_per_token: Option<f64>,
    /// `output_cost_per_token`.
    pub output_cost_per_token: Option<f64>,
    /// `cache_read_input_token_cost`.
    pub cache_read_input_token_cost: Option<f64>,
    /// `cache_creation_input_token_cost`.
    pub cache_creation_input_token_cost: Option<f64>,
    /// `cache_creation_input_token_cost_above_1hr`: Anthropic's 1-hour cache writes.
    pub cache_creation_input_token_cost_above_1hr: Option<f64>,
    /// `output_cost_per_reasoning_token`.
    pub output_cost_per_reasoning_token: Option<f64>,
}

impl PriceOverride {
    /// True when no price field is set.
    pub fn is_empty(&self) -> bool {
        *self == PriceOverride::default()
    }
}

/// A refused price override: the `litellm_params` field at fault and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceError {
    /// The field name inside `litellm_params`, e.g. `input_cost_per_token`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The price of a deployment: the built-in price of `upstream_model` with the overrides
/// replacing single fields, or the overrides alone for a model the table does not know
/// (then input and output are both required). `Ok(None)`: unpriced.
///
/// Where a price is not given, cache reads and writes cost the input price and reasoning
/// costs the output price, also when only the input or output price is overridden.
pub fn resolve(upstream_model: &str, o: &PriceOverride) -> Result<Option<Price>, PriceError> {
    resolve_over(find(upstream_model), upstream_model, o)
}

/// The price of a deployment of a provider that charges nothing per token (a local
/// server): 0, with the overrides replacing single fields.
pub fn resolve_free(o: &PriceOverride) -> Result<Option<Price>, PriceError> {
    let free = Row {
        input: 0,
        cached: 0,
        write: 0,
        output: 0,
        kind: RowKind::Chat,
    };
    resolve_over(Some(free.rates()), "", o)
}

fn resolve_over(
    listed: Option<Rates>,
    upstream_model: &str,
    o: &PriceOverride,
) -> Result<Option<Price>, PriceError> {
    let input = usd_per_token("input_cost_per_token", o.input_cost_per_token)?;
    let output = usd_per_token("output_cost_per_token", o.output_cost_per_token)?;
    let cache_read = usd_per_token("cache_read_input_token_cost", o.cache_read_input_token_cost)?;
    let cache_write = usd_per_token(
        "cache_creation_input_token_cost",
        o.cache_creation_input_token_cost,
    )?;
    let cache_write_1h = usd_per_token(
        "cache_creation_input_token_cost_above_1hr",
        o.cache_creation_input_token_cost_above_1hr,
    )?;
    let reasoning = usd_per_token(
        "output_cost_per_reasoning_token",
        o.output_cost_per_reasoning_token,
    )?;
    let base = match (listed, input, output) {
        (Some(rates), _, _) => rates,
        (None, Some(input), Some(output)) => Rates {
            input,
            output,
            cache_read: None,
            cache_write: None,
            cache_write_1h: None,
            reasoning: None,
            embedding: false,
        },
        (None, None, None) if o.is_empty() => return Ok(None),
        (None, i, _) => {
            return Err(PriceError {
                field: if i.is_some() {
                    "output_cost_per_token"
                } else {
                    "input_cost_per_token"
                },
                message: format!(
                    "is required: `{upstream_model}` has no built-in price; set both input_cost_per_token and output_cost_per_token (USD per token, e.g. 0.000003 for $3 per million tokens) to price it, or remove its price fields to leave it unpriced"
                ),
            });
        }
    };
    Ok(Some(
        Rates {
            input: input.unwrap_or(base.input),
            output: output.unwrap_or(base.output),
            cache_read: cache_read.or(base.cache_read),
            cache_write: cache_write.or(base.cache_write),
            // An overridden 5-minute write price with no 1-hour one: the table's 1-hour
            // price still stands (it follows the input price, not the write price).
            cache_write_1h: cache_write_1h.or(base.cache_write_1h),
            reasoning: reasoning.or(base.reasoning),
            embedding: base.embedding,
        }
        .price(),
    ))
}

/// Checks one override and converts it to pico-USD per token.
fn usd_per_token(field: &'static str, value: Option<f64>) -> Result<Option<u64>, PriceError> {
    match value {
        None => Ok(None),
        Some(v) if !v.is_finite() || v < 0.0 => Err(PriceError {
            field,
            message: "must be a number of USD per token, 0 or more (e.g. 0.000003 for $3 per million tokens)".to_string(),
        }),
        Some(v) if v > MAX_USD_PER_TOKEN => Err(PriceError {
            field,
            message: format!(
                "`{v}` USD per token is more than any model costs: the unit is USD per token, not per million tokens ($3 per million tokens is 0.000003)"
            ),
        }),
        // At most 1e10 pico-USD after the checks above: the cast cannot truncate.
        Some(v) => Ok(Some((v * 1e12).round() as u64)),
    }
}

/// A table row: the prices a provider lists; the unlisted ones follow input or output.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    cache_write_1h: Option<u64>,
    reasoning: Option<u64>,
    /// An embedding model (input tokens only, `/v1/embeddings`).
    embedding: bool,
}

impl Rates {
    fn price(self) -> Price {
        let cache_write = self.cache_write.unwrap_or(self.input);
        Price {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read.unwrap_or(self.input),
            cache_write,
            cache_write_1h: self.cache_write_1h.unwrap_or(cache_write),
            reasoning: self.reasoning.unwrap_or(self.output),
        }
    }
}

/// USD per million tokens to pico-USD per token, exact for up to six decimals. Evaluated at
/// compile time: the table holds integers only.
const fn usd(per_mtok: f64) -> u32 {
    (per_mtok * 1e6 + 0.5) as u32
}

/// A row of the built-in table: its prices in pico-USD per token (= micro-USD per million
/// tokens) as `u32`, up to $4,294 per million tokens: under a quarter of the size of
/// [`Rates`], which only a lookup builds, since every row is in the module's data.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    input: u32,
    /// Cache reads; the input price where a provider lists none.
    cached: u32,
    /// Cache writes; 0 where they cost the input price.
    write: u32,
    output: u32,
    kind: RowKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RowKind {
    Chat,
    /// Anthropic's: 1-hour cache writes cost twice the input price.
    Anthropic,
    /// An embedding model: input tokens only.
    Embedding,
}

impl Row {
    fn rates(self) -> Rates {
        let input = u64::from(self.input);
        Rates {
            input,
            output: u64::from(self.output),
            cache_read: Some(u64::from(self.cached)),
            cache_write: (self.write > 0).then_some(u64::from(self.write)),
            cache_write_1h: (self.kind == RowKind::Anthropic).then_some(input * 2),
            reasoning: None,
            embedding: self.kind == RowKind::Embedding,
        }
    }
}

/// Input, cached input, output (USD per million tokens); cache writes cost the input price.
const fn p(input: f64, cached: f64, output: f64) -> Row {
    Row {
        input: usd(input),
        cached: usd(cached),
        write: 0,
        output: usd(output),
        kind: RowKind::Chat,
    }
}

/// Input and output (USD per million tokens), for a provider that lists no cache price:
/// cache reads and writes cost the input price.
const fn io(input: f64, output: f64) -> Row {
    p(input, input, output)
}

/// An embedding model: input only (USD per million tokens).
const fn embed(input: f64) -> Row {
    Row {
        kind: RowKind::Embedding,
        ..p(input, input, 0.0)
    }
}

/// Input, cached input, cache write, output (USD per million tokens).
const fn pw(input: f64, cached: f64, write: f64, output: f64) -> Row {
    Row {
        write: usd(write),
        ..p(input, cached, output)
    }
}

/// An Anthropic model: input, cached input, 5-minute cache write, output (USD per million
/// tokens); 1-hour cache writes cost twice the input price.
const fn anthropic(input: f64, cached: f64, write: f64, output: f64) -> Row {
    Row {
        kind: RowKind::Anthropic,
        ..pw(input, cached, write, output)
    }
}

/// Built-in prices, sorted by name (a test checks it; lookups binary-search it).
///
/// Taken on 2026-11-22 ([`PRICES_AS_OF`]), standard (not batch, flex or priority) rates, text
/// tokens, USD per million tokens; cross-checked against BerriAI/litellm
/// `model_prices_and_context_window.json`. Reasoning tokens cost the output price for every
/// model listed.
///
/// - **OpenAI**, <https://developers.openai.com/api/docs/pricing> and the model pages
///   (`/api/docs/models/<id>`). Cache writes cost the input price except for GPT-5.6 and
///   GPT-6.x, which list them (1.25× input; 30-minute retention). GPT-5.4 and later bill
///   prompts over 272K tokens at 2× input and 1.5× output: not modelled, the short-context
///   rate is used.
/// - **Anthropic**, <https://platform.claude.com/docs/en/about-claude/pricing> and the model
///   pages. Cache writes are the 5-minute price; 1-hour writes, which usage reports apart
///   (`cache_creation.ephemeral_1h_input_tokens`), cost twice the input price. Claude
///   Sonnet 4/4.5 beyond 200K tokens, and Claude Haiku 5.5 beyond 100K tokens (5×), cost
///   more: the base tier is used. Claude Sonnet 5.5 cache reads are $0.10 since 2026-10-07.
/// - **Google Gemini** (Developer API), <https://ai.google.dev/gemini-api/docs/pricing>.
///   Tiered models use the standard tier, prompts ≤ 200K tokens; input is the text / image /
///   video price (audio costs more); no cache-write price (implicit caching; explicit caches
///   also bill storage per hour, which is not per token). Promotional rates (Gemini 3.7 and
///   3.8 Flash) are left out rather than expire silently.
/// - **Google Vertex AI** lists Gemini and Claude at the publishers' prices under the same
///   model names (<https://cloud.google.com/vertex-ai/generative-ai/pricing>, taken
///   2026-12-07), so `vertex_ai/` deployments are priced from the rows above (Claude's
///   `@version` is stripped like a date). Not modelled: Claude's regional endpoints, which
///   cost 10 % more than `global` for Claude Sonnet 4.5 and later models
///   (<https://platform.claude.com/docs/en/build-with-claude/claude-on-vertex-ai>); set
///   `input_cost_per_token` and friends on such deployments.
/// - **Cohere**, <https://cohere.com/pricing> and
///   <https://docs.cohere.com/docs/how-does-cohere-pricing-work>, taken 2026-12-07. Priced
///   on `usage.billed_units`, the counts the Cohere translator reports; no cache prices.
///   Cohere's dated names (`-03-2025`) carry no version suffix [`lookup`] strips, so each
///   snapshot is listed.
/// - **Embedding models**, taken 2026-12-07, input tokens only: OpenAI
///   `text-embedding-3-small` $0.02, `-3-large` $0.13, `ada-002` $0.10
///   (<https://developers.openai.com/api/docs/pricing>, "Embeddings"); Gemini
///   `gemini-embedding-001` $0.15 and `text-embedding-004` free of charge
///   (<https://ai.google.dev/gemini-api/docs/pricing>); Cohere `embed-v4.0` $0.12 (text)
///   and the v3.0 models $0.10 (<https://cohere.com/pricing>).
///
/// - **AWS Bedrock**, <https://aws.amazon.com/bedrock/pricing/>, on-demand, taken
///   2026-12-07, found by the model id without its inference profile's geography and its
///   version ([`bedrock_name`]). Claude is priced as Anthropic lists it, which is Bedrock's
///   price for global inference profiles; regional profiles and in-region ids of Claude
///   Sonnet 4.5 and later cost 10 % more, which a deployment sets with
///   `input_cost_per_token` / `output_cost_per_token`. Nova lists cache reads (no write
///   price); Llama and Mistral have none.
/// - **Bedrock embedding models**, <https://aws.amazon.com/bedrock/pricing/> (on-demand,
///   input tokens only), taken 2026-12-07 and cross-checked against published price
///   tables: Titan Text Embeddings V2 $0.02, Cohere Embed 3 English and Multilingual
///   $0.10, Cohere Embed 4 $0.12 (text). Listed by their full ids (Titan V1 costs more
///   than V2, so the version is not stripped), found also behind an inference profile.
///   Vertex AI's `text-embedding-005` and `text-multilingual-embedding-002` bill per
///   character, not per token: left unpriced (set `input_cost_per_token` to price them);
///   `gemini-embedding-001` on Vertex AI is priced per token like the Gemini API, by the
///   row above.
///
/// **The OpenAI-compatible presets** are listed as `<provider>/<model>` (a hosted open
/// model costs differently at each provider, so no row is shared), taken on 2026-12-07
/// from the price pages below: from the page itself where a copy could be read (DeepSeek,
/// Fireworks AI, Groq's caching, xAI's Grok 4.6, Mistral's caching), else from the
/// figures quoted from it by the model cards and other catalogs, with at least two
/// agreeing, all cross-checked against the models.dev catalog. Only models whose price
/// could be read are listed; the others stay unpriced. Where a provider lists no
/// cached-input price, cache reads cost the input price.
///
/// - **DeepSeek**, <https://api-docs.deepseek.com/quick_start/pricing>. DeepSeek bills half
///   its rates off-peak (every hour but 01:00–04:00 and 06:00–10:00 UTC on weekdays); the
///   table holds the peak rates, so a cost is never under the bill (off-peak it reads up to
///   twice it). `deepseek-v4-flash` is served and billed as `deepseek-flash`.
/// - **Groq**, <https://console.groq.com/docs/models>; cached input at half the input price
///   (<https://console.groq.com/docs/prompt-caching>).
/// - **xAI**, <https://docs.x.ai/developers/models>. Requests over 200K tokens cost twice
///   as much: not modelled.
/// - **Mistral**, <https://mistral.ai/pricing>; cached input at 10 % of the input price
///   (<https://docs.mistral.ai/studio-api/conversations/advanced/prompt-caching>). Dated
///   names only: the `-latest` aliases move to models of other prices.
/// - **Together AI**, <https://docs.together.ai/docs/serverless/models>.
/// - **Fireworks AI**, <https://docs.fireworks.ai/serverless/pricing> (standard tier).
/// - **Cerebras**, <https://www.cerebras.ai/pricing>.
/// - Not listed: **DeepInfra** (no price page could be read), **Perplexity** (Sonar's chat
///   completions were retired on 2026-09-27, and its per-request search fees are not
///   per token). **OpenRouter** answers report their own cost, **Ollama** and **LM
///   Studio** cost nothing and **vLLM** is unpriced unless configured (see
///   [`crate::provider::registry::Prices`]).
static TABLE: &[(&str, Row)] = &[
    ("amazon.nova-lite", p(0.06, 0.015, 0.24)),
    ("amazon.nova-micro", p(0.035, 0.00875, 0.14)),
    ("amazon.nova-premier", p(2.50, 2.50, 12.50)),
    ("amazon.nova-pro", p(0.80, 0.20, 3.20)),
    ("amazon.titan-embed-text-v2:0", embed(0.02)),
    ("cerebras/gpt-oss-120b", io(0.35, 0.75)),
    ("claude-3-5-haiku", anthropic(0.80, 0.08, 1.00, 4.00)),
    ("claude-3-7-sonnet", anthropic(3.00, 0.30, 3.75, 15.00)),
    ("claude-3-haiku", anthropic(0.25, 0.03, 0.30, 1.25)),
    ("claude-fable-5", anthropic(10.00, 1.00, 12.50, 50.00)),
    ("claude-fable-5-1", anthropic(10.00, 0.25, 12.50, 50.00)),
    ("claude-haiku-4-5", anthropic(1.00, 0.10, 1.25, 5.00)),
    ("claude-haiku-5-5", anthropic(0.10, 0.01, 0.125, 0.50)),
    ("claude-opus-4", anthropic(15.00, 1.50, 18.75, 75.00)),
    ("claude-opus-4-0", anthropic(15.00, 1.50, 18.75, 75.00)),
    ("claude-opus-4-1", anthropic(15.00, 1.50, 18.75, 75.00)),
    ("claude-opus-4-5", anthropic(5.00, 0.50, 6.25, 25.00)),
    ("claude-opus-4-6", anthropic(5.00, 0.50, 6.25, 25.00)),
    ("claude-opus-4-7", anthropic(5.00, 0.50, 6.25, 25.00)),
    ("claude-opus-4-8", anthropic(5.00, 0.50, 6.25, 25.00)),
    ("claude-opus-5", anthropic(5.00, 0.50, 6.25, 25.00)),
    ("claude-opus-5-5", anthropic(4.00, 0.20, 5.00, 20.00)),
    ("claude-sonnet-4", anthropic(3.00, 0.30, 3.75, 15.00)),
    ("claude-sonnet-4-0", anthropic(3.00, 0.30, 3.75, 15.00)),
    ("claude-sonnet-4-5", anthropic(3.00, 0.30, 3.75, 15.00)),
    ("claude-sonnet-4-6", anthropic(3.00, 0.30, 3.75, 15.00)),
    ("claude-sonnet-5", anthropic(2.00, 0.20, 2.50, 10.00)),
    ("claude-sonnet-5-5", anthropic(2.00, 0.10, 2.50, 10.00)),
    ("cohere.embed-english-v3", embed(0.10)),
    ("cohere.embed-multilingual-v3", embed(0.10)),
    ("cohere.embed-v4:0", embed(0.12)),
    ("command-a-03-2025", p(2.50, 2.50, 10.00)),
    ("command-r-08-2024", p(0.15, 0.15, 0.60)),
    ("command-r-plus-08-2024", p(2.50, 2.50, 10.00)),
    ("command-r7b-12-2024", p(0.0375, 0.0375, 0.15)),
    ("deepseek/deepseek-flash", p(0.30, 0.006, 1.20)),
    ("deepseek/deepseek-v4-flash", p(0.30, 0.006, 1.20)),
    ("deepseek/deepseek-v4-pro", p(1.32, 0.044, 3.96)),
    ("embed-english-light-v3.0", embed(0.10)),
    ("embed-english-v3.0", embed(0.10)),
    ("embed-multilingual-light-v3.0", embed(0.10)),
    ("embed-multilingual-v3.0", embed(0.10)),
    ("embed-v4.0", embed(0.12)),
    (
        "fireworks_ai/accounts/fireworks/models/deepseek-v4-pro",
        p(1.74, 0.145, 3.48),
    ),
    (
        "fireworks_ai/accounts/fireworks/models/glm-5p1",
        p(1.40, 0.26, 4.40),
    ),
    (
        "fireworks_ai/accounts/fireworks/models/gpt-oss-120b",
        p(0.15, 0.015, 0.60),
    ),
    (
        "fireworks_ai/accounts/fireworks/models/gpt-oss-20b",
        p(0.07, 0.035, 0.30),
    ),
    (
        "fireworks_ai/accounts/fireworks/models/kimi-k2p6",
        p(0.95, 0.16, 4.00),
    ),
    ("gemini-2.5-flash", p(0.30, 0.03, 2.50)),
    ("gemini-2.5-flash-lite", p(0.10, 0.01, 0.40)),
    ("gemini-2.5-pro", p(1.25, 0.125, 10.00)),
    ("gemini-3-flash-preview", p(0.50, 0.05, 3.00)),
    ("gemini-3.1-flash-lite", p(0.25, 0.025, 1.50)),
    ("gemini-3.1-flash-lite-preview", p(0.25, 0.025, 1.50)),
    ("gemini-3.1-pro-preview", p(2.00, 0.20, 12.00)),
    ("gemini-3.5-flash", p(1.50, 0.15, 9.00)),
    ("gemini-embedding-001", embed(0.15)),
    ("gpt-4.1", p(2.00, 0.50, 8.00)),
    ("gpt-4.1-mini", p(0.40, 0.10, 1.60)),
    ("gpt-4.1-nano", p(0.10, 0.025, 0.40)),
    ("gpt-4o", p(2.50, 1.25, 10.00)),
    ("gpt-4o-mini", p(0.15, 0.075, 0.60)),
    ("gpt-5", p(1.25, 0.125, 10.00)),
    ("gpt-5-mini", p(0.25, 0.025, 2.00)),
    ("gpt-5-nano", p(0.05, 0.005, 0.40)),
    ("gpt-5.1", p(1.25, 0.125, 10.00)),
    ("gpt-5.2", p(1.75, 0.175, 14.00)),
    ("gpt-5.4", p(2.50, 0.25, 15.00)),
    ("gpt-5.4-mini", p(0.75, 0.075, 4.50)),
    ("gpt-5.4-nano", p(0.20, 0.02, 1.25)),
    ("gpt-5.5", p(5.00, 0.50, 30.00)),
    ("gpt-5.6-luna", pw(0.20, 0.02, 0.25, 1.20)),
    ("gpt-5.6-terra", pw(2.00, 0.20, 2.50, 12.00)),
    ("gpt-6-luna", pw(0.10, 0.01, 0.125, 0.50)),
    ("gpt-6-sol", pw(2.00, 0.20, 2.50, 10.00)),
    ("gpt-6.2-sol", pw(2.00, 0.10, 2.50, 10.00)),
    ("groq/openai/gpt-oss-120b", p(0.15, 0.075, 0.60)),
    ("groq/openai/gpt-oss-20b", p(0.075, 0.0375, 0.30)),
    ("meta.llama3-1-70b-instruct", p(0.72, 0.72, 0.72)),
    ("meta.llama3-1-8b-instruct", p(0.22, 0.22, 0.22)),
    ("meta.llama3-3-70b-instruct", p(0.72, 0.72, 0.72)),
    ("meta.llama4-maverick-17b-instruct", p(0.24, 0.24, 0.97)),
    ("meta.llama4-scout-17b-instruct", p(0.17, 0.17, 0.66)),
    ("mistral.mistral-large-2407", p(2.00, 2.00, 6.00)),
    ("mistral.mistral-small-2402", p(1.00, 1.00, 3.00)),
    ("mistral.pixtral-large-2502", p(2.00, 2.00, 6.00)),
    ("mistral/mistral-large-2512", p(0.50, 0.05, 1.50)),
    ("mistral/mistral-medium-2604", p(1.50, 0.15, 7.50)),
    ("o1", p(15.00, 7.50, 60.00)),
    ("o3", p(2.00, 0.50, 8.00)),
    ("o3-mini", p(1.10, 0.55, 4.40)),
    ("o4-mini", p(1.10, 0.275, 4.40)),
    ("text-embedding-004", embed(0.0)),
    ("text-embedding-3-large", embed(0.13)),
    ("text-embedding-3-small", embed(0.02)),
    ("text-embedding-ada-002", embed(0.10)),
    ("together_ai/openai/gpt-oss-120b", io(0.15, 0.60)),
    ("together_ai/qwen/qwen3.5-9b", io(0.17, 0.25)),
    ("xai/grok-4.3", p(1.25, 0.20, 2.50)),
    ("xai/grok-4.6", p(2.00, 0.50, 6.00)),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    fn price(model: &str) -> Price {
        lookup(model).unwrap_or_else(|| panic!("{model} is not priced"))
    }

    /// Embedding models are known as such, priced on input tokens only; chat models are
    /// known as chat models; others are not known.
    #[test]
    fn embedding_models() {
        for (model, per_mtok) in [
            ("text-embedding-3-small", 0.02),
            ("text-embedding-3-large", 0.13),
            ("text-embedding-ada-002", 0.10),
            ("gemini-embedding-001", 0.15),
            ("models/text-embedding-004", 0.0),
            ("embed-v4.0", 0.12),
            ("embed-english-v3.0", 0.10),
        ] {
            assert_eq!(is_embedding_model(model), Some(true), "{model}");
            let cost = cost_micro_usd(&usage(1_000_000, 0), &lookup(model).unwrap());
            assert_eq!(cost, (per_mtok * 1e6_f64).round() as u64, "{model}");
        }
        assert_eq!(is_embedding_model("gpt-4o-2024-08-06"), Some(false));
        assert_eq!(is_embedding_model("my-embedder"), None);
    }

    /// The table is sorted and unique (binary search relies on it), lower-case, and sane.
    #[test]
    fn table_is_sorted_and_sane() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} !< {}", pair[0].0, pair[1].0);
        }
        for (name, row) in TABLE {
            assert_eq!(*name, name.to_ascii_lowercase());
            let p = row.rates().price();
            if row.kind == RowKind::Embedding {
                // Input only; Google's text-embedding-004 is free of charge.
                assert_eq!(p.output, 0, "{name}");
            } else {
                assert!(p.input > 0 && p.output > 0, "{name}");
            }
            assert!(
                p.cache_read <= p.input,
                "{name}: cache reads cost more than input"
            );
            assert!(
                p.cache_write >= p.input,
                "{name}: cache writes cost less than input"
            );
            assert_eq!(p.reasoning, p.output, "{name}");
        }
        assert!(TABLE.len() < 150);
    }

    /// Published prices become exact integers at compile time.
    #[test]
    fn usd_per_mtok_is_exact() {
        assert_eq!(usd(2.50), 2_500_000);
        assert_eq!(usd(0.005), 5_000);
        assert_eq!(usd(0.0375), 37_500);
        assert_eq!(usd(0.075), 75_000);
        assert_eq!(usd(0.29), 290_000);
        assert_eq!(usd(18.75), 18_750_000);
        assert_eq!(usd(0.0), 0);
        let p = price("gpt-4o");
        assert_eq!(
            (p.input, p.cache_read, p.cache_write, p.output, p.reasoning),
            (2_500_000, 1_250_000, 2_500_000, 10_000_000, 10_000_000)
        );
    }

    /// Input and output only: 1000 × $2.50/M + 500 × $10/M = $0.0075.
    #[test]
    fn plain_input_and_output() {
        let p = price("gpt-4o");
        let u = usage(1000, 500);
        assert_eq!(cost_pico_usd(&u, &p), 7_500_000_000);
        assert_eq!(cost_micro_usd(&u, &p), 7_500);
        assert!((cost_usd(&u, &p) - 0.0075).abs() < 1e-12);
    }

    /// Cached tokens are part of prompt_tokens and are priced once, at the cache-read price.
    #[test]
    fn cached_tokens_are_not_double_counted() {
        let p = price("gpt-4o");
        let u = Usage {
            cache_read_tokens: 400,
            ..usage(1000, 0)
        };
        // 600 × 2.50 + 400 × 1.25 (per million) = 2000 micro-USD.
        assert_eq!(cost_micro_usd(&u, &p), 2_000);
    }

    /// Cache writes are priced at the write price, cache reads at the read price.
    #[test]
    fn cache_writes_and_reads() {
        let p = price("claude-sonnet-4-5");
        let u = Usage {
            prompt_tokens: 10_000,
            cache_read_tokens: 3_000,
            cache_write_tokens: 5_000,
            ..usage(0, 1_000)
        };
        // 2000 × 3 + 3000 × 0.30 + 5000 × 3.75 + 1000 × 15 (per million).
        assert_eq!(cost_pico_usd(&u, &p), 40_650_000_000);
        assert_eq!(cost_micro_usd(&u, &p), 40_650);
    }

    /// Anthropic's 1-hour cache writes cost twice the input price, the other writes the
    /// 5-minute write price; a 1-hour count larger than the writes is capped by them.
    #[test]
    fn one_hour_cache_writes() {
        let p = price("claude-sonnet-4-5");
        assert_eq!(p.cache_write, 3_750_000);
        assert_eq!(p.cache_write_1h, 6_000_000);
        let u = Usage {
            prompt_tokens: 10_000,
            cache_write_tokens: 5_000,
            cache_write_1h_tokens: 2_000,
            ..usage(0, 0)
        };
        // 5000 × 3 + 3000 × 3.75 + 2000 × 6 (per million).
        assert_eq!(cost_pico_usd(&u, &p), 38_250_000_000);
        let capped = Usage {
            cache_write_1h_tokens: 9_000,
            ..u
        };
        // Every write is a 1-hour one: 5000 × 3 + 5000 × 6.
        assert_eq!(cost_pico_usd(&capped, &p), 45_000_000_000);
        // Providers without a 1-hour cache price every write alike.
        let gpt = price("gpt-4o");
        assert_eq!(gpt.cache_write_1h, gpt.cache_write);
        // The override sets it; a 5-minute override leaves the table's 1-hour price.
        let o = PriceOverride {
            cache_creation_input_token_cost_above_1hr: Some(0.00001),
            ..over()
        };
        assert_eq!(
            resolve("claude-sonnet-4-5", &o)
                .unwrap()
                .unwrap()
                .cache_write_1h,
            10_000_000
        );
        let o = PriceOverride {
            cache_creation_input_token_cost: Some(0.000004),
            ..over()
        };
        let r = resolve("claude-sonnet-4-5", &o).unwrap().unwrap();
        assert_eq!((r.cache_write, r.cache_write_1h), (4_000_000, 6_000_000));
    }

    /// Reasoning is part of completion_tokens: priced once, at its own price when it has one.
    #[test]
    fn reasoning_tokens() {
        let u = Usage {
            reasoning_tokens: 600,
            ..usage(0, 1_000)
        };
        let o3 = price("o3");
        assert_eq!(
            cost_micro_usd(&u, &o3),
            cost_micro_usd(&usage(0, 1_000), &o3)
        );
        assert_eq!(cost_micro_usd(&u, &o3), 8_000);
        let apart = Price {
            output: 2_500_000,
            reasoning: 3_500_000,
            ..Price::default()
        };
        // 400 × 2.50 + 600 × 3.50 (per million) = 3100 micro-USD.
        assert_eq!(cost_micro_usd(&u, &apart), 3_100);
    }

    /// No tokens, no cost; a zero price costs nothing either.
    #[test]
    fn zero_usage() {
        let p = price("claude-opus-4-1");
        assert_eq!(cost_pico_usd(&Usage::default(), &p), 0);
        assert_eq!(cost_micro_usd(&Usage::default(), &p), 0);
        assert_eq!(cost_usd(&Usage::default(), &p), 0.0);
        assert_eq!(cost_micro_usd(&usage(1_000, 1_000), &Price::default()), 0);
    }

    /// Counts that do not add up saturate instead of underflowing or panicking.
    #[test]
    fn inconsistent_counts_saturate() {
        let p = price("claude-sonnet-4-5");
        let u = Usage {
            prompt_tokens: 100,
            completion_tokens: 10,
            cache_read_tokens: 1_000,
            cache_write_tokens: 1_000,
            cache_write_1h_tokens: 0,
            reasoning_tokens: 50,
            reported_cost_micro_usd: None,
        };
        // No uncached input, no visible output; the reported counts are priced as reported.
        let expected = 1_000 * 300_000 + 1_000 * 3_750_000 + 50 * 15_000_000;
        assert_eq!(cost_pico_usd(&u, &p), expected);
        let huge = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            cache_read_tokens: u64::MAX,
            cache_write_tokens: u64::MAX,
            cache_write_1h_tokens: u64::MAX,
            reasoning_tokens: u64::MAX,
            reported_cost_micro_usd: None,
        };
        let max = Price {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: u64::MAX,
            cache_write: u64::MAX,
            cache_write_1h: u64::MAX,
            reasoning: u64::MAX,
        };
        assert_eq!(cost_pico_usd(&huge, &max), u128::MAX);
        assert_eq!(cost_micro_usd(&huge, &max), u64::MAX);
        assert!(cost_usd(&huge, &max).is_finite());
    }

    /// One rounding per answer, to the nearest micro-USD, halves up.
    #[test]
    fn rounding_to_micro_usd() {
        let nano = price("gpt-5-nano"); // $0.05 / M input = 50_000 pico-USD per token
        assert_eq!(cost_pico_usd(&usage(10, 0), &nano), 500_000);
        assert_eq!(cost_micro_usd(&usage(10, 0), &nano), 1);
        assert_eq!(cost_micro_usd(&usage(9, 0), &nano), 0);
        assert_eq!(cost_micro_usd(&usage(29, 0), &nano), 1);
        assert_eq!(cost_micro_usd(&usage(30, 0), &nano), 2);
    }

    /// Exact names, dated and versioned snapshots, case and the `models/` prefix.
    #[test]
    fn lookup_by_name_and_snapshot() {
        assert_eq!(lookup("gpt-4o"), lookup("gpt-4o-2024-08-06"));
        assert_eq!(
            lookup("claude-sonnet-4-5"),
            lookup("claude-sonnet-4-5-20250929")
        );
        assert_eq!(
            lookup("claude-sonnet-4-5"),
            lookup("claude-sonnet-4-5@20250929")
        );
        assert_eq!(lookup("claude-opus-4"), lookup("claude-opus-4-20250514"));
        assert_eq!(
            lookup("claude-3-5-haiku"),
            lookup("claude-3-5-haiku-latest")
        );
        assert_eq!(lookup("gemini-2.5-pro"), lookup("models/gemini-2.5-pro"));
        assert_eq!(lookup("gemini-2.5-flash"), lookup("gemini-2.5-flash-001"));
        assert_eq!(lookup("gpt-4o"), lookup(" GPT-4o "));
        // The longest known name wins: the mini snapshot is priced as mini, not as gpt-4o.
        assert_eq!(lookup("gpt-4o-mini-2024-07-18"), lookup("gpt-4o-mini"));
        assert_ne!(lookup("gpt-4o-mini"), lookup("gpt-4o"));
        assert_eq!(
            lookup("claude-opus-4-1-20250805"),
            lookup("claude-opus-4-1")
        );
        assert_eq!(price("claude-opus-4-5-20251101").input, 5_000_000);
        assert_eq!(price("o4-mini-2025-04-16").cache_read, 275_000);
        assert_eq!(price("gemini-2.5-flash-lite").output, 400_000);
        assert_eq!(price("gpt-6.2-sol").cache_write, 2_500_000);
    }

    /// Bedrock ids and inference profiles find their model's price.
    #[test]
    fn bedrock_ids_and_inference_profiles() {
        let claude = price("claude-sonnet-4-5");
        for id in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ] {
            assert_eq!(lookup(id), Some(claude), "{id}");
        }
        assert_eq!(
            lookup("eu.amazon.nova-pro-v1:0"),
            Some(price("amazon.nova-pro"))
        );
        // Embedding models keep their version: Titan V1 is not V2's price.
        assert_eq!(price("amazon.titan-embed-text-v2:0").input, 20_000);
        assert_eq!(lookup("amazon.titan-embed-text-v1"), None);
        assert_eq!(price("us.cohere.embed-v4:0").input, 120_000);
        assert_eq!(is_embedding_model("cohere.embed-english-v3"), Some(true));
        assert_eq!(
            lookup("meta.llama3-3-70b-instruct-v1:0"),
            Some(price("meta.llama3-3-70b-instruct"))
        );
        assert_eq!(lookup("us.amazon.nova-unknown-v1:0"), None);
    }

    /// The presets' rows are found under `<provider>/<model>` only: the same open model is
    /// another price at another host, and none of them is OpenAI's.
    #[test]
    fn preset_rows_are_scoped() {
        let groq = price("groq/openai/gpt-oss-120b");
        assert_eq!(
            (groq.input, groq.cache_read, groq.output),
            (150_000, 75_000, 600_000)
        );
        assert_eq!(lookup("GROQ/openai/GPT-OSS-120B"), Some(groq));
        assert_ne!(
            lookup("fireworks_ai/accounts/fireworks/models/gpt-oss-120b"),
            Some(groq)
        );
        for bare in [
            "openai/gpt-oss-120b",
            "gpt-oss-120b",
            "deepseek-v4-pro",
            "grok-4.6",
        ] {
            assert_eq!(lookup(bare), None, "{bare}");
        }
        // DeepSeek at its peak rate: 1000 × 1.32 + 1000 cached × 0.044 + 100 × 3.96.
        let u = Usage {
            cache_read_tokens: 1_000,
            ..usage(2_000, 100)
        };
        assert_eq!(
            cost_micro_usd(&u, &price("deepseek/deepseek-v4-pro")),
            1_760
        );
        // Anthropic rows keep their 1-hour write price through the compact row.
        assert_eq!(price("claude-opus-4-1").cache_write_1h, 30_000_000);
        assert_eq!(price("text-embedding-3-small").output, 0);
    }

    /// A free provider costs 0 until the deployment prices a field; other fields stay 0.
    #[test]
    fn free_providers() {
        assert_eq!(resolve_free(&over()).unwrap(), Some(Price::default()));
        let o = PriceOverride {
            output_cost_per_token: Some(0.000001),
            ..over()
        };
        let p = resolve_free(&o).unwrap().unwrap();
        assert_eq!((p.input, p.output, p.reasoning), (0, 1_000_000, 1_000_000));
        let bad = PriceOverride {
            input_cost_per_token: Some(-1.0),
            ..over()
        };
        assert_eq!(
            resolve_free(&bad).unwrap_err().field,
            "input_cost_per_token"
        );
    }

    /// A reported USD cost becomes micro-USD, rounded; nonsense is no cost.
    #[test]
    fn reported_costs() {
        assert_eq!(micro_usd(0.000505), Some(505));
        assert_eq!(micro_usd(0.0000004), Some(0));
        assert_eq!(micro_usd(0.0), Some(0));
        assert_eq!(micro_usd(1e30), Some(u64::MAX));
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert_eq!(micro_usd(bad), None, "{bad}");
        }
    }

    /// Unknown models are unpriced, never priced like a neighbour.
    #[test]
    fn unknown_models_are_unpriced() {
        for model in [
            "",
            "llama3",
            "claude-opus-4-9",
            "claude-opus-4-20250514-extra",
            "gpt-4o-audio-preview",
            "gpt-4o-mini-tts",
            "gpt-5.7",
            "gpt-4o-20240806x",
            "gemini-2.5-flash-preview-09-2025",
            "ft:gpt-4o-2024-08-06:acme::abc123",
            "o3-pro",
            "gpt-4o-",
            "gpt-4o@",
        ] {
            assert_eq!(lookup(model), None, "{model}");
        }
    }

    fn over() -> PriceOverride {
        PriceOverride::default()
    }

    /// Overrides replace single fields of the built-in price; derived prices follow.
    #[test]
    fn overrides_replace_fields() {
        let o = PriceOverride {
            input_cost_per_token: Some(0.000002),
            ..over()
        };
        let p = resolve("claude-sonnet-4-5", &o).unwrap().unwrap();
        let base = price("claude-sonnet-4-5");
        assert_eq!(
            p,
            Price {
                input: 2_000_000,
                ..base
            }
        );

        // gpt-4o's cache writes and reasoning follow input and output.
        let o = PriceOverride {
            input_cost_per_token: Some(0.000001),
            output_cost_per_token: Some(0.000004),
            ..over()
        };
        let p = resolve("gpt-4o-2024-08-06", &o).unwrap().unwrap();
        assert_eq!(
            (p.input, p.cache_read, p.cache_write, p.output, p.reasoning),
            (1_000_000, 1_250_000, 1_000_000, 4_000_000, 4_000_000)
        );

        let o = PriceOverride {
            output_cost_per_reasoning_token: Some(0.0000035),
            ..over()
        };
        assert_eq!(resolve("o3", &o).unwrap().unwrap().reasoning, 3_500_000);

        assert_eq!(resolve("o3", &over()).unwrap(), lookup("o3"));
        assert_eq!(resolve("llama3", &over()).unwrap(), None);
    }

    /// An unknown model is priced by input and output together.
    #[test]
    fn overrides_price_unknown_models() {
        let o = PriceOverride {
            input_cost_per_token: Some(0.0),
            output_cost_per_token: Some(0.0000006),
            cache_read_input_token_cost: Some(0.0),
            ..over()
        };
        let p = resolve("llama3", &o).unwrap().unwrap();
        assert_eq!(
            p,
            Price {
                input: 0,
                output: 600_000,
                cache_read: 0,
                cache_write: 0,
                cache_write_1h: 0,
                reasoning: 600_000
            }
        );

        let o = PriceOverride {
            input_cost_per_token: Some(0.000001),
            ..over()
        };
        let e = resolve("llama3", &o).unwrap_err();
        assert_eq!(e.field, "output_cost_per_token");
        assert!(e.message.contains("llama3"), "{}", e.message);

        let o = PriceOverride {
            output_cost_per_token: Some(0.000001),
            ..over()
        };
        assert_eq!(
            resolve("llama3", &o).unwrap_err().field,
            "input_cost_per_token"
        );

        let o = PriceOverride {
            cache_read_input_token_cost: Some(0.000001),
            ..over()
        };
        assert_eq!(
            resolve("llama3", &o).unwrap_err().field,
            "input_cost_per_token"
        );
    }

    /// Overrides must be finite, not negative, and per token.
    #[test]
    fn overrides_are_validated() {
        for (bad, hint) in [
            (f64::NAN, "0 or more"),
            (f64::INFINITY, "0 or more"),
            (-0.000001, "0 or more"),
            (3.0, "not per million"),
        ] {
            let o = PriceOverride {
                cache_creation_input_token_cost: Some(bad),
                ..over()
            };
            let e = resolve("claude-haiku-4-5", &o).unwrap_err();
            assert_eq!(e.field, "cache_creation_input_token_cost");
            assert!(e.message.contains(hint), "{}", e.message);
        }
        let o = PriceOverride {
            input_cost_per_token: Some(MAX_USD_PER_TOKEN),
            ..over()
        };
        assert_eq!(resolve("o3", &o).unwrap().unwrap().input, 10_000_000_000);
    }
}

/// Formats micro-USD as a decimal USD amount (`1234` → `"0.001234"`), exact.
pub fn format_usd(micro_usd: u64) -> String {
    format!("{}.{:06}", micro_usd / 1_000_000, micro_usd % 1_000_000)
}

#[cfg(test)]
mod format_tests {
    use super::format_usd;

    /// Micro-USD print exactly, without float rounding.
    #[test]
    fn formats() {
        assert_eq!(format_usd(0), "0.000000");
        assert_eq!(format_usd(1234), "0.001234");
        assert_eq!(format_usd(12_000_001), "12.000001");
    }
}
