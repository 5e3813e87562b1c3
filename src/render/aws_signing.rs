//! Envoy's AWS SigV4 signer for Bedrock deployments, in the router's upstream chain right
//! after the gateway's upstream instance.
//!
//! There it signs what the module produced: with `use_unsigned_payload: false` it buffers
//! the translated body and signs its SHA-256, on every attempt, so a fallback to or from
//! Bedrock is signed afresh. The module sets the final `Host` before it (the router's host
//! rewrite comes after the upstream filters). Credentials come from Envoy's standard AWS
//! chain (environment, profile file, web identity / IRSA, container and instance
//! metadata); no AWS secret passes through the module.
//!
//! One signer per region (a signature names its region), each wrapped in a matcher that
//! skips it unless the attempt is a Converse or InvokeModel call (which the embedding
//! models and Claude's Messages take) to one of that region's hosts without an
//! `authorization` header (a Bedrock API key travels as a bearer token instead). Attempts
//! to other providers pass through untouched. Deployments signed at one host share its
//! region (the config refuses two), so at most one signer matches an attempt.

use serde_json::{json, Value};

use crate::config::GatewayConfig;
use crate::provider::registry::WireApi;

/// The signers, one per region that has deployments signed by SigV4 (none when there
/// are no such deployments).
pub fn signers(config: &GatewayConfig) -> Vec<Value> {
    let mut regions: Vec<(&str, Vec<&str>)> = Vec::new();
    for d in &config.deployments {
        if d.provider.spec().wire != WireApi::BedrockConverse || d.api_key.is_some() {
            continue;
        }
        let region = d.options.aws_region.as_deref().unwrap_or("us-east-1");
        let host = d.endpoint.host.as_str();
        match regions.iter_mut().find(|(r, _)| *r == region) {
            Some((_, hosts)) if hosts.contains(&host) => {}
            Some((_, hosts)) => hosts.push(host),
            None => regions.push((region, vec![host])),
        }
    }
    regions
        .into_iter()
        .map(|(region, hosts)| signer(region, &hosts))
        .collect()
}

fn header_input(name: &str) -> Value {
    json!({"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
        "header_name": name,
    }})
}

fn regex_predicate(header: &str, regex: String) -> Value {
    json!({"single_predicate": {
        "input": header_input(header),
        "value_match": {"safe_regex": {"google_re2": {}, "regex": regex}},
    }})
}

/// `host` as an RE2 literal.
fn escape(host: &str) -> String {
    let mut out = String::with_capacity(host.len() + 8);
    for c in host.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn signer(region: &str, hosts: &[&str]) -> Value {
    let hosts: Vec<String> = hosts.iter().map(|h| escape(h)).collect();
    let signed_here = json!({"and_matcher": {"predicate": [
        regex_predicate(
            ":path",
            "^.*/model/[^/]+/(converse(-stream)?|invoke(-with-response-stream)?)$".to_string(),
        ),
        regex_predicate(":authority", format!("^({})$", hosts.join("|"))),
        {"not_matcher": regex_predicate("authorization", "^.*$".to_string())},
    ]}});
    json!({
        "name": format!("aws_sigv4_{region}"),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "xds_matcher": {"matcher_list": {"matchers": [{
                "predicate": {"not_matcher": signed_here},
                "on_match": {"action": {"name": "skip", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter",
                }}},
            }]}},
            "extension_config": {
                "name": "envoy.filters.http.aws_request_signing",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning",
                    "service_name": "bedrock",
                    "region": region,
                    // Sign the translated body's SHA-256, which Bedrock checks.
                    "use_unsigned_payload": false,
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(models: Value) -> GatewayConfig {
        GatewayConfig::from_value(json!({
            "model_list": models,
            "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"},
        }))
        .unwrap()
    }

    /// One signer per region of the SigV4 deployments, none for keyed or other ones; each
    /// signs the translated body for its region's hosts only.
    #[test]
    fn one_signer_per_region() {
        let c = config(json!([
            {"model_name": "a", "litellm_params": {"model": "bedrock/amazon.nova-pro-v1:0"}},
            {"model_name": "b", "litellm_params": {"model": "bedrock/eu.amazon.nova-pro-v1:0", "aws_region_name": "eu-west-1"}},
            {"model_name": "c", "litellm_params": {"model": "bedrock/amazon.nova-lite-v1:0", "aws_region_name": "eu-west-1"}},
            {"model_name": "k", "litellm_params": {"model": "bedrock/amazon.nova-pro-v1:0", "aws_region_name": "ap-south-1", "api_key": "os.environ/AWS_BEARER_TOKEN_BEDROCK"}},
            {"model_name": "o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
        ]));
        let s = signers(&c);
        assert_eq!(s.len(), 2);
        let signing = &s[1]["typed_config"]["extension_config"]["typed_config"];
        assert_eq!(signing["region"], "eu-west-1");
        assert_eq!(signing["use_unsigned_payload"], false);
        let text = s[1].to_string();
        assert!(
            text.contains(r"bedrock\\-runtime\\.eu\\-west\\-1\\.amazonaws\\.com"),
            "{text}"
        );
        // Converse and InvokeModel (Claude's Messages) calls are signed, nothing else.
        let path = &s[1]["typed_config"]["xds_matcher"]["matcher_list"]["matchers"][0]["predicate"]
            ["not_matcher"]["and_matcher"]["predicate"][0]["single_predicate"];
        assert_eq!(path["input"]["name"], ":path");
        assert_eq!(
            path["value_match"]["safe_regex"]["regex"],
            "^.*/model/[^/]+/(converse(-stream)?|invoke(-with-response-stream)?)$"
        );
        assert!(signers(&config(json!([
            {"model_name": "o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
        ])))
        .is_empty());
    }
}
