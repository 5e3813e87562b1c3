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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::host;
use crate::hashing::fingerprint;
use crate::openai::ChatRequest;

/// Filter-state name of the hand-off (`<vm token>:<id>`).
pub const HANDOFF_STATE: &str = "llm_request_handoff";

/// More requests in flight on one worker than this parse their body again.
const MAX_ENTRIES: usize = 16_384;

struct Entry {
    chat: Rc<ChatRequest>,
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

/// Registers `chat`, parsed from `body`, and publishes its name; returns the id to
/// [`release`] when the request ends, `None` when nothing was registered.
pub fn register(chat: Rc<ChatRequest>, body: &[u8]) -> Option<u64> {
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
                chat,
                body: fingerprint(body),
            },
        );
        true
    });
    if !stored {
        return None;
    }
    let name = format!("{}:{id}", vm_token());
    if host::set_property(&[HANDOFF_STATE], name.as_bytes()).is_err() {
        release(id);
        return None;
    }
    Some(id)
}

/// The request parsed from `body` by this request's downstream instance, if it can be used.
pub fn lookup(body: &[u8]) -> Option<Rc<ChatRequest>> {
    let name = host::property_text(&[HANDOFF_STATE])?;
    let (token, id) = name.split_once(':')?;
    if token.parse::<u64>().ok()? != vm_token() {
        return None;
    }
    let id = id.parse::<u64>().ok()?;
    ENTRIES.with(|e| {
        let e = e.borrow();
        let entry = e.get(&id)?;
        (entry.body == fingerprint(body)).then(|| Rc::clone(&entry.chat))
    })
}

/// Forgets the entry `id`.
pub fn release(id: u64) {
    ENTRIES.with(|e| {
        e.borrow_mut().remove(&id);
    });
}
