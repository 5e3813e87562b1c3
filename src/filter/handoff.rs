//! Hands the request the downstream instance parsed to the upstream instance, so that an
//! attempt translates it without parsing the body again.
//!
//! Both instances run in the same VM on the same worker thread, so a thread-local map is
//! enough. The downstream context registers its parsed request and names it in filter state
//! (which clients cannot write); each attempt looks it up and uses it only when the body it
//! is about to translate is the very body that was parsed (same fingerprint) and the name
//! comes from this VM. Anything else (another VM, a body changed in between, a full map)
//! falls back to parsing the body, so the hand-off can only save work, never change a
//! translation. The downstream context removes its entry when it ends, however it ends.
//!
//! The way back uses the same entry: each attempt writes who answered and the usage into a
//! shared [`Report`], which the downstream instance reads for its stats instead of reading
//! the filter state back one property at a time (the filter state is still written, for the
//! access log and the rate limit).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::host;
use crate::hashing::fingerprint;
use crate::messages_api::InboundApi;
use crate::openai::ChatRequest;
use crate::usage::Usage;

/// How the last attempt went, as the upstream instance saw it.
#[derive(Debug, Default)]
pub struct Report {
    /// An attempt got an answer (the fields below are set).
    pub answered: bool,
    /// Provider of the deployment that answered last.
    pub provider: &'static str,
    /// Its upstream model.
    pub upstream_model: String,
    /// Attempts made when the last answer came (Envoy's count).
    pub attempts: u64,
    /// Attempts that reached the upstream instance so far: each counts itself.
    pub started: u64,
    /// Usage of the answer, once known.
    pub usage: Option<Usage>,
    /// Cost in micro-USD; `None` when unpriced.
    pub cost_micro_usd: Option<u64>,
    /// `usage` is the answer's final usage (the stream ended, or the whole body came).
    pub complete: bool,
    /// An attempt reported usage the request cannot have caused (see `UsageBound`).
    pub usage_rejected: bool,
    /// The answer's text, scrubbed and capped, for a captured request.
    pub captured_text: Option<String>,
}

/// What the downstream instance hands to each attempt.
#[derive(Clone)]
pub struct Handed {
    /// The parsed request.
    pub request: HandedRequest,
    /// Where the attempt reports back.
    pub report: Rc<RefCell<Report>>,
    /// The client's Anthropic headers (`anthropic-beta`, `anthropic-version`) of a
    /// Messages request: an earlier attempt to another provider removes them from the
    /// shared header map.
    pub anthropic_headers: Rc<[(&'static str, String)]>,
    /// A `/v1/responses` request (`chat` is its chat form).
    pub responses: Option<Rc<crate::responses_api::ResponsesCall>>,
    /// The request's messages and answer go on its spans.
    pub capture: bool,
}

/// The parsed request, by endpoint.
#[derive(Clone)]
pub enum HandedRequest {
    /// `/v1/chat/completions`.
    Chat(Rc<ChatRequest>),
    /// `/v1/embeddings` (each attempt reads its few fields from the body again).
    Embeddings,
}

/// Filter-state name of the hand-off (`<vm token>:<id>`, then `:m` for a Messages request,
/// `:c` for `count_tokens`, `:e` for embeddings and `:r` for Responses, which attempts need even without an
/// entry).
pub const HANDOFF_STATE: &str = "llm_request_handoff";

/// More requests in flight on one worker than this parse their body again.
const MAX_ENTRIES: usize = 16_384;

struct Entry {
    handed: Handed,
    body: (usize, u64),
}

thread_local! {
    static ENTRIES: RefCell<HashMap<u64, Entry>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    static VM_TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// A token that tells this VM's names from another VM's: the VM's first use of the
/// hand-off, in nanoseconds.
fn vm_token() -> u64 {
    VM_TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(host::now_nanos().max(1));
        }
        t.get()
    })
}

/// The suffix of the hand-off's name that says which API the client spoke.
fn api_suffix(api: InboundApi) -> &'static str {
    match api {
        InboundApi::Chat => "",
        InboundApi::Messages => ":m",
        InboundApi::CountTokens => ":c",
        InboundApi::Embeddings => ":e",
        InboundApi::Responses => ":r",
    }
}

/// Registers `handed`, parsed from `body`, and publishes its name; returns the id to
/// [`release`] when the request ends, `None` when nothing was registered (a Messages
/// request still publishes its API).
pub fn register(handed: Handed, body: &[u8], api: InboundApi) -> Option<u64> {
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id.wrapping_add(1).max(1));
        id
    });
    let stored = ENTRIES.with(|e| {
        let mut e = e.borrow_mut();
        if e.len() >= MAX_ENTRIES {
            return false;
        }
        e.insert(
            id,
            Entry {
                handed,
                body: fingerprint(body),
            },
        );
        true
    });
    if !stored {
        if api != InboundApi::Chat {
            let _ = host::set_property(
                &[HANDOFF_STATE],
                format!("0:0{}", api_suffix(api)).as_bytes(),
            );
        }
        return None;
    }
    let name = format!("{}:{id}{}", vm_token(), api_suffix(api));
    if host::set_property(&[HANDOFF_STATE], name.as_bytes()).is_err() {
        release(id);
        return None;
    }
    Some(id)
}

/// The API the client spoke, and what this request's downstream instance handed over for
/// `body` if it can be used.
pub fn lookup(body: &[u8]) -> (InboundApi, Option<Handed>) {
    let Some(name) = host::property_text(&[HANDOFF_STATE]) else {
        return (InboundApi::Chat, None);
    };
    let (name, api) = match name.rsplit_once(':') {
        Some((rest, "m")) => (rest, InboundApi::Messages),
        Some((rest, "c")) => (rest, InboundApi::CountTokens),
        Some((rest, "e")) => (rest, InboundApi::Embeddings),
        Some((rest, "r")) => (rest, InboundApi::Responses),
        _ => (name.as_str(), InboundApi::Chat),
    };
    (api, find(name, body))
}

fn find(name: &str, body: &[u8]) -> Option<Handed> {
    let (token, id) = name.split_once(':')?;
    if token.parse::<u64>().ok()? != vm_token() {
        return None;
    }
    let id = id.parse::<u64>().ok()?;
    ENTRIES.with(|e| {
        let e = e.borrow();
        let entry = e.get(&id)?;
        (entry.body == fingerprint(body)).then(|| entry.handed.clone())
    })
}

/// Forgets the entry `id`.
pub fn release(id: u64) {
    ENTRIES.with(|e| {
        e.borrow_mut().remove(&id);
    });
}
