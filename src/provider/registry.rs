//! The one table of providers: everything the gateway knows about a provider apart from
//! its translator's code. Config parsing (prefixes, default bases, owned options), the
//! credential header, docs and the test matrices read it, so that adding a provider is one
//! entry here (plus a translator folder when it speaks a new wire API).

use super::ProviderKind;

/// How a provider takes its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `authorization: Bearer <key>`.
    Bearer,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKeyHeader,
    /// `x-goog-api-key: <key>` (Gemini; never in the URL, so never in access logs).
    GoogApiKey,
    /// `?<name>=<key>` in the query; for providers that accept nothing else.
    Query(&'static str),
    /// Keyless: a key, when configured, is still sent as a bearer token.
    None,
    /// AWS SigV4, signed by Envoy's `aws_request_signing` filter after the module (the
    /// module never holds AWS secrets); a key, when configured, is a Bedrock API key sent
    /// as a bearer token instead.
    AwsSigV4,
    /// A Google OAuth2 access token (`authorization: Bearer`), fetched and refreshed by the
    /// gateway from a metadata server (`general_settings.gcp_token_url`), not configured.
    GoogleOAuth,
}

impl Credential {
    /// The header that carries `key` in this style, when it travels in a header.
    pub fn header(self, key: &str) -> Option<(&'static str, String)> {
        match self {
            Credential::Bearer
            | Credential::None
            | Credential::AwsSigV4
            | Credential::GoogleOAuth => Some(("authorization", format!("Bearer {key}"))),
            Credential::XApiKey => Some(("x-api-key", key.to_string())),
            Credential::ApiKeyHeader => Some(("api-key", key.to_string())),
            Credential::GoogApiKey => Some(("x-goog-api-key", key.to_string())),
            Credential::Query(_) => None,
        }
    }

    /// How the docs name the style.
    pub fn describe(self) -> &'static str {
        match self {
            Credential::Bearer => "`authorization: Bearer`",
            Credential::XApiKey => "`x-api-key`",
            Credential::ApiKeyHeader => "`api-key` (or an Entra ID bearer token)",
            Credential::GoogApiKey => "`x-goog-api-key`",
            Credential::Query(_) => "query parameter",
            Credential::None => "none (keyless)",
            Credential::AwsSigV4 => {
                "AWS SigV4, signed by Envoy (or a Bedrock API key as `authorization: Bearer`)"
            }
            Credential::GoogleOAuth => "OAuth2 access token from the metadata server",
        }
    }
}

/// The wire API a provider speaks, which picks its translator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireApi {
    /// OpenAI Chat Completions, the body forwarded (`openai_compatible/`).
    OpenAiChat,
    /// Azure OpenAI: Chat Completions on Azure's paths and credentials.
    AzureOpenAi,
    /// Anthropic Messages (`anthropic/`).
    AnthropicMessages,
    /// Gemini `generateContent` (`gemini/`).
    GeminiGenerate,
    /// Cohere v2 Chat (`cohere/`).
    CohereChat,
    /// AWS Bedrock Converse and ConverseStream (`bedrock/`).
    BedrockConverse,
    /// Gemini `generateContent` on Vertex AI's publisher paths (`vertex/`).
    VertexGemini,
    /// Anthropic Messages on Vertex AI's `rawPredict` (`vertex/`).
    VertexAnthropic,
}

impl WireApi {
    /// Whether the gateway speaks this API's embeddings (`/v1/embeddings`) for some of its
    /// models: Anthropic has none; on Bedrock, Titan Text Embeddings and Cohere Embed
    /// (`crate::embeddings::Api::of` tells the models apart); on Vertex AI, Google's
    /// text embedding models.
    pub fn embeds(self) -> bool {
        matches!(
            self,
            WireApi::OpenAiChat
                | WireApi::AzureOpenAi
                | WireApi::GeminiGenerate
                | WireApi::CohereChat
                | WireApi::BedrockConverse
                | WireApi::VertexGemini
        )
    }
}

/// What an OpenAI-compatible provider does differently from OpenAI, each documented in the
/// README of its fixture folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// Request parameters the provider rejects (or ignores): a 400 naming the field unless
    /// the deployment sets `drop_params`, and then left out. Values that change nothing
    /// (`n: 1`, `logprobs: false`, `logit_bias: {}`, ...) always pass.
    pub rejected_params: &'static [&'static str],
    /// The answer field that carries reasoning text when it is not `reasoning_content`
    /// (`reasoning`): renamed to `reasoning_content` in answers and stream deltas.
    pub reasoning_field: Option<&'static str>,
    /// The tool-call ids it accepts in a conversation.
    pub tool_call_ids: ToolCallIds,
    /// The member whose `usage` carries a stream's usage when the chunk has no top-level
    /// `usage` (Groq's `x_groq`): read on the chunk that finishes the answer, and sent to
    /// a client that asked for usage as an OpenAI usage chunk.
    pub stream_usage_in: Option<&'static str>,
}

/// Tool-call ids a provider accepts in the messages it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallIds {
    /// Any string.
    Any,
    /// Exactly nine of `a-z A-Z 0-9` (Mistral): other ids (from another provider, earlier
    /// in the conversation) are mapped to such ids, the same id always to the same one.
    Alphanumeric9,
}

/// No quirks: OpenAI itself.
pub const NO_QUIRKS: Quirks = Quirks {
    rejected_params: &[],
    reasoning_field: None,
    tool_call_ids: ToolCallIds::Any,
    stream_usage_in: None,
};

/// Where the cost of a provider's answers comes from when the deployment sets no price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prices {
    /// The built-in table lists its models under the names deployments use (`gpt-4o`).
    Listed,
    /// The built-in table lists its models as `<provider name>/<model>`: hosted open
    /// models cost differently at each provider, so a row is never shared.
    Scoped,
    /// Each answer reports what it was charged (`usage.cost`, in USD): that is its cost.
    Reported,
    /// Nothing is charged per token (a local server): its answers cost 0.
    Free,
    /// Unpriced unless the deployment sets a price (`base_model` or the cost fields).
    Unlisted,
}

impl Prices {
    /// How the docs name it.
    pub fn describe(self) -> &'static str {
        match self {
            Prices::Listed | Prices::Scoped => "built-in table",
            Prices::Reported => "the cost each answer reports (`usage.cost`)",
            Prices::Free => "free ($0)",
            Prices::Unlisted => "unpriced unless configured",
        }
    }
}

/// A provider-owned `litellm_params` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedOption {
    /// `anthropic_version`: the `anthropic-version` header.
    AnthropicVersion,
    /// `api_version`: Azure's `api-version` query, or `v1` for the v1 path.
    ApiVersion,
    /// `azure_ad_token`: an Entra ID bearer token from the environment instead of `api_key`.
    AzureAdToken,
    /// `aws_region_name`: the AWS region of a Bedrock deployment.
    AwsRegionName,
    /// `vertex_project`: the Google Cloud project in Vertex AI paths.
    VertexProject,
    /// `vertex_location`: the Vertex AI region (or `global`), which also picks the host.
    VertexLocation,
}

impl OwnedOption {
    /// The `litellm_params` field.
    pub fn field(self) -> &'static str {
        match self {
            OwnedOption::AnthropicVersion => "anthropic_version",
            OwnedOption::ApiVersion => "api_version",
            OwnedOption::AzureAdToken => "azure_ad_token",
            OwnedOption::AwsRegionName => "aws_region_name",
            OwnedOption::VertexProject => "vertex_project",
            OwnedOption::VertexLocation => "vertex_location",
        }
    }
}

/// Every option some provider owns, to tell "not this provider's" from "unknown".
pub const ALL_OWNED_OPTIONS: &[OwnedOption] = &[
    OwnedOption::AnthropicVersion,
    OwnedOption::ApiVersion,
    OwnedOption::AzureAdToken,
    OwnedOption::AwsRegionName,
    OwnedOption::VertexProject,
    OwnedOption::VertexLocation,
];

/// One provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Which provider.
    pub kind: ProviderKind,
    /// Name in configs, metrics, headers and fixture folders.
    pub name: &'static str,
    /// Name for people (docs, messages).
    pub display_name: &'static str,
    /// `litellm_params.model` prefixes (LiteLLM's), the name first.
    pub prefixes: &'static [&'static str],
    /// API base when a deployment names none; `None`: `api_base` is required.
    pub default_api_base: Option<&'static str>,
    /// How the key travels.
    pub credential: Credential,
    /// Whether a deployment needs a key (keyless local servers do not).
    pub key_required: bool,
    /// The wire API, hence the translator.
    pub wire: WireApi,
    /// The key variable the docs suggest (`api_key: os.environ/<this>`).
    pub key_env: Option<&'static str>,
    /// The `litellm_params` options it owns and validates.
    pub options: &'static [OwnedOption],
    /// Differences from OpenAI's Chat Completions (OpenAI-compatible family only).
    pub quirks: Quirks,
    /// Where its answers' cost comes from without a configured price.
    pub prices: Prices,
    /// A model of the provider, for docs and the test matrices.
    pub example_model: &'static str,
    /// The API reference its translation follows.
    pub reference: &'static str,
}

/// What every OpenAI-compatible preset shares; each entry sets the rest.
const PRESET: ProviderSpec = ProviderSpec {
    kind: ProviderKind::OpenAi,
    name: "",
    display_name: "",
    prefixes: &[],
    default_api_base: None,
    credential: Credential::Bearer,
    key_required: true,
    wire: WireApi::OpenAiChat,
    key_env: None,
    options: &[],
    quirks: NO_QUIRKS,
    prices: Prices::Scoped,
    example_model: "",
    reference: "",
};

/// A local server: keyless unless a key is configured.
const KEYLESS_PRESET: ProviderSpec = ProviderSpec {
    credential: Credential::None,
    key_required: false,
    prices: Prices::Free,
    ..PRESET
};

/// OpenAI itself, also what [`ProviderKind::spec`] falls back to.
pub const OPENAI: ProviderSpec = ProviderSpec {
    kind: ProviderKind::OpenAi,
    name: "openai",
    display_name: "OpenAI",
    prefixes: &["openai", "openai_compatible", "custom_openai"],
    default_api_base: Some("https://api.openai.com/v1"),
    credential: Credential::Bearer,
    key_required: false,
    wire: WireApi::OpenAiChat,
    key_env: Some("OPENAI_API_KEY"),
    options: &[],
    quirks: NO_QUIRKS,
    prices: Prices::Listed,
    example_model: "gpt-4o-2024-08-06",
    reference: "https://platform.openai.com/docs/api-reference/chat",
};

/// Every provider, in the order of [`ProviderKind::ALL`] (checked by a test).
pub static PROVIDERS: &[ProviderSpec] = &[
    OPENAI,
    ProviderSpec {
        kind: ProviderKind::Anthropic,
        name: "anthropic",
        display_name: "Anthropic",
        prefixes: &["anthropic"],
        default_api_base: Some("https://api.anthropic.com"),
        credential: Credential::XApiKey,
        key_required: true,
        wire: WireApi::AnthropicMessages,
        key_env: Some("ANTHROPIC_API_KEY"),
        options: &[OwnedOption::AnthropicVersion],
        quirks: NO_QUIRKS,
        prices: Prices::Listed,
        example_model: "claude-sonnet-4-5",
        reference: "https://docs.anthropic.com/en/api/messages",
    },
    ProviderSpec {
        kind: ProviderKind::Gemini,
        name: "gemini",
        display_name: "Gemini",
        prefixes: &["gemini", "google_ai_studio"],
        default_api_base: Some("https://generativelanguage.googleapis.com"),
        credential: Credential::GoogApiKey,
        key_required: true,
        wire: WireApi::GeminiGenerate,
        key_env: Some("GEMINI_API_KEY"),
        options: &[],
        quirks: NO_QUIRKS,
        prices: Prices::Listed,
        example_model: "gemini-2.5-flash",
        reference: "https://ai.google.dev/api/generate-content",
    },
    ProviderSpec {
        kind: ProviderKind::Cohere,
        name: "cohere",
        display_name: "Cohere",
        prefixes: &["cohere", "cohere_chat"],
        default_api_base: Some("https://api.cohere.com"),
        credential: Credential::Bearer,
        key_required: true,
        wire: WireApi::CohereChat,
        key_env: Some("COHERE_API_KEY"),
        options: &[],
        quirks: NO_QUIRKS,
        prices: Prices::Listed,
        example_model: "command-a-03-2025",
        reference: "https://docs.cohere.com/reference/chat",
    },
    ProviderSpec {
        kind: ProviderKind::Bedrock,
        name: "bedrock",
        display_name: "AWS Bedrock",
        prefixes: &["bedrock"],
        // `https://bedrock-runtime.<aws_region_name>.amazonaws.com` (see `bedrock_api_base`).
        default_api_base: None,
        credential: Credential::AwsSigV4,
        key_required: false,
        wire: WireApi::BedrockConverse,
        key_env: Some("AWS_BEARER_TOKEN_BEDROCK"),
        options: &[OwnedOption::AwsRegionName],
        quirks: NO_QUIRKS,
        prices: Prices::Listed,
        example_model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        reference: "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html",
    },
    ProviderSpec {
        kind: ProviderKind::Azure,
        name: "azure",
        display_name: "Azure OpenAI",
        prefixes: &["azure"],
        default_api_base: None,
        credential: Credential::ApiKeyHeader,
        key_required: true,
        wire: WireApi::AzureOpenAi,
        key_env: Some("AZURE_API_KEY"),
        options: &[OwnedOption::ApiVersion, OwnedOption::AzureAdToken],
        quirks: NO_QUIRKS,
        prices: Prices::Unlisted,
        example_model: "my-gpt-4o",
        reference: "https://learn.microsoft.com/azure/ai-foundry/openai/reference",
    },
    ProviderSpec {
        kind: ProviderKind::Mistral,
        name: "mistral",
        display_name: "Mistral",
        prefixes: &["mistral"],
        default_api_base: Some("https://api.mistral.ai/v1"),
        key_env: Some("MISTRAL_API_KEY"),
        quirks: Quirks {
            rejected_params: &["logit_bias", "logprobs", "top_logprobs"],
            reasoning_field: None,
            tool_call_ids: ToolCallIds::Alphanumeric9,
            ..NO_QUIRKS
        },
        example_model: "mistral-large-latest",
        reference: "https://docs.mistral.ai/api/#tag/chat/operation/chat_completion_v1_chat_completions_post",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Groq,
        name: "groq",
        display_name: "Groq",
        prefixes: &["groq"],
        default_api_base: Some("https://api.groq.com/openai/v1"),
        key_env: Some("GROQ_API_KEY"),
        quirks: Quirks {
            rejected_params: &["logit_bias", "logprobs", "top_logprobs", "n"],
            reasoning_field: Some("reasoning"),
            stream_usage_in: Some("x_groq"),
            ..NO_QUIRKS
        },
        example_model: "llama-3.3-70b-versatile",
        reference: "https://console.groq.com/docs/openai",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::DeepSeek,
        name: "deepseek",
        display_name: "DeepSeek",
        prefixes: &["deepseek"],
        default_api_base: Some("https://api.deepseek.com"),
        key_env: Some("DEEPSEEK_API_KEY"),
        quirks: Quirks {
            rejected_params: &["logit_bias", "n"],
            reasoning_field: None,
            ..NO_QUIRKS
        },
        example_model: "deepseek-chat",
        reference: "https://api-docs.deepseek.com/api/create-chat-completion",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Xai,
        name: "xai",
        display_name: "xAI",
        prefixes: &["xai"],
        default_api_base: Some("https://api.x.ai/v1"),
        key_env: Some("XAI_API_KEY"),
        example_model: "grok-3-mini",
        reference: "https://docs.x.ai/docs/api-reference#chat-completions",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::OpenRouter,
        name: "openrouter",
        display_name: "OpenRouter",
        prefixes: &["openrouter"],
        default_api_base: Some("https://openrouter.ai/api/v1"),
        key_env: Some("OPENROUTER_API_KEY"),
        quirks: Quirks {
            rejected_params: &[],
            reasoning_field: Some("reasoning"),
            ..NO_QUIRKS
        },
        prices: Prices::Reported,
        example_model: "openai/gpt-4o",
        reference: "https://openrouter.ai/docs/api-reference/chat-completion",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Together,
        name: "together_ai",
        display_name: "Together AI",
        prefixes: &["together_ai"],
        default_api_base: Some("https://api.together.xyz/v1"),
        key_env: Some("TOGETHERAI_API_KEY"),
        quirks: Quirks {
            rejected_params: &[],
            reasoning_field: Some("reasoning"),
            ..NO_QUIRKS
        },
        example_model: "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        reference: "https://docs.together.ai/reference/chat-completions-1",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Fireworks,
        name: "fireworks_ai",
        display_name: "Fireworks AI",
        prefixes: &["fireworks_ai"],
        default_api_base: Some("https://api.fireworks.ai/inference/v1"),
        key_env: Some("FIREWORKS_AI_API_KEY"),
        example_model: "accounts/fireworks/models/llama-v3p1-8b-instruct",
        reference: "https://docs.fireworks.ai/api-reference/post-chatcompletions",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Perplexity,
        name: "perplexity",
        display_name: "Perplexity",
        prefixes: &["perplexity"],
        default_api_base: Some("https://api.perplexity.ai"),
        key_env: Some("PERPLEXITYAI_API_KEY"),
        quirks: Quirks {
            rejected_params: &[
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "n",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
            ],
            reasoning_field: None,
            ..NO_QUIRKS
        },
        example_model: "sonar",
        reference: "https://docs.perplexity.ai/api-reference/chat-completions-post",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Cerebras,
        name: "cerebras",
        display_name: "Cerebras",
        prefixes: &["cerebras"],
        default_api_base: Some("https://api.cerebras.ai/v1"),
        key_env: Some("CEREBRAS_API_KEY"),
        quirks: Quirks {
            rejected_params: &["frequency_penalty", "presence_penalty", "logit_bias"],
            reasoning_field: Some("reasoning"),
            ..NO_QUIRKS
        },
        example_model: "llama-3.3-70b",
        reference: "https://inference-docs.cerebras.ai/resources/openai",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::DeepInfra,
        name: "deepinfra",
        display_name: "DeepInfra",
        prefixes: &["deepinfra"],
        default_api_base: Some("https://api.deepinfra.com/v1/openai"),
        key_env: Some("DEEPINFRA_API_KEY"),
        example_model: "meta-llama/Llama-3.3-70B-Instruct",
        reference: "https://deepinfra.com/docs/openai_api",
        ..PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Ollama,
        name: "ollama",
        display_name: "Ollama",
        prefixes: &["ollama_chat", "ollama"],
        default_api_base: Some("http://localhost:11434/v1"),
        key_env: Some("OLLAMA_API_KEY"),
        quirks: Quirks {
            rejected_params: &["logit_bias", "n"],
            reasoning_field: Some("reasoning"),
            ..NO_QUIRKS
        },
        example_model: "llama3.2",
        reference: "https://github.com/ollama/ollama/blob/main/docs/openai.md",
        ..KEYLESS_PRESET
    },
    ProviderSpec {
        kind: ProviderKind::Vllm,
        name: "hosted_vllm",
        display_name: "vLLM",
        prefixes: &["hosted_vllm"],
        default_api_base: None,
        key_env: Some("HOSTED_VLLM_API_KEY"),
        quirks: Quirks {
            rejected_params: &[],
            reasoning_field: Some("reasoning"),
            ..NO_QUIRKS
        },
        // A server someone runs: its cost per token is theirs to set.
        prices: Prices::Unlisted,
        example_model: "meta-llama/Llama-3.1-8B-Instruct",
        reference: "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        ..KEYLESS_PRESET
    },
    ProviderSpec {
        kind: ProviderKind::LmStudio,
        name: "lm_studio",
        display_name: "LM Studio",
        prefixes: &["lm_studio"],
        default_api_base: Some("http://localhost:1234/v1"),
        key_env: Some("LM_STUDIO_API_KEY"),
        example_model: "qwen2.5-7b-instruct",
        reference: "https://lmstudio.ai/docs/app/api/endpoints/openai",
        ..KEYLESS_PRESET
    },
    VERTEX_GEMINI,
    ProviderSpec {
        kind: ProviderKind::VertexAnthropic,
        name: "vertex_ai_anthropic",
        display_name: "Claude on Vertex AI",
        prefixes: &["vertex_ai_anthropic"],
        wire: WireApi::VertexAnthropic,
        example_model: "claude-sonnet-4-5@20250929",
        reference: "https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude",
        ..VERTEX_GEMINI
    },
];

/// Gemini on Vertex AI; `vertex_ai/claude-*` deployments are Claude on Vertex AI (the
/// model names the publisher). The host follows `vertex_location`, so there is no fixed
/// default base.
const VERTEX_GEMINI: ProviderSpec = ProviderSpec {
    kind: ProviderKind::VertexGemini,
    name: "vertex_ai",
    display_name: "Gemini on Vertex AI",
    prefixes: &["vertex_ai", "vertex_ai_beta"],
    default_api_base: None,
    credential: Credential::GoogleOAuth,
    key_required: false,
    wire: WireApi::VertexGemini,
    key_env: None,
    options: &[OwnedOption::VertexProject, OwnedOption::VertexLocation],
    quirks: NO_QUIRKS,
    prices: Prices::Listed,
    example_model: "gemini-2.5-flash",
    reference: "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference",
};

/// The provider a config prefix or `provider` value names.
pub fn by_prefix(prefix: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.prefixes.contains(&prefix))
}

/// The provider with this config name.
pub fn by_name(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table and the enum agree: one entry per kind, in order, names and prefixes
    /// unique, every entry's name among its prefixes.
    #[test]
    fn one_entry_per_kind() {
        assert_eq!(PROVIDERS.len(), ProviderKind::ALL.len());
        let mut prefixes = std::collections::HashSet::new();
        for (spec, kind) in PROVIDERS.iter().zip(ProviderKind::ALL) {
            assert_eq!(spec.kind, *kind, "{}", spec.name);
            assert_eq!(kind.spec().name, spec.name);
            assert!(spec.prefixes.contains(&spec.name));
            for p in spec.prefixes {
                assert!(prefixes.insert(*p), "prefix `{p}` is used twice");
            }
            assert!(spec.reference.starts_with("https://"), "{}", spec.name);
            if spec.key_required {
                assert_ne!(spec.credential, Credential::None, "{}", spec.name);
            }
            if spec.wire != WireApi::OpenAiChat {
                assert_eq!(spec.quirks, NO_QUIRKS, "{}", spec.name);
                // Only the OpenAI translator reads a reported cost; every other
                // translator's provider is free only if it says so.
                assert!(
                    !matches!(
                        spec.prices,
                        Prices::Reported | Prices::Free | Prices::Scoped
                    ),
                    "{}",
                    spec.name
                );
            }
        }
    }

    /// Every credential style that travels in a header names one.
    #[test]
    fn credential_headers() {
        assert_eq!(
            Credential::Bearer.header("k"),
            Some(("authorization", "Bearer k".to_string()))
        );
        assert_eq!(
            Credential::ApiKeyHeader.header("k"),
            Some(("api-key", "k".to_string()))
        );
        assert_eq!(Credential::Query("key").header("k"), None);
    }
}
