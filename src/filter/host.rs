//! Host calls that never panic.
//!
//! The proxy-wasm SDK's `hostcalls` panic on any status they do not expect, and a panic
//! kills the Wasm VM (every later request on that worker fails until it reloads). These
//! wrappers call the same ABI functions and return every status as an error, so the shell
//! decides what a failure means. This is the only module with `unsafe` code.
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

/// A non-OK status from the host (`proxy_wasm` ABI status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

/// Result of a host call.
pub type HostResult<T> = Result<T, HostError>;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;

/// Header maps (ABI `MapType`).
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Map {
    /// Request headers.
    RequestHeaders = 0,
    /// Request trailers.
    RequestTrailers = 1,
    /// Response headers.
    ResponseHeaders = 2,
    /// Headers of the answer to a call the module made (`dispatch_http_call`).
    HttpCallResponseHeaders = 6,
}

/// Body buffers (ABI `BufferType`).
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Buffer {
    /// The request body seen so far.
    RequestBody = 0,
    /// The current response body chunk (or the buffered body).
    ResponseBody = 1,
    /// The body of the answer to a call the module made.
    HttpCallResponseBody = 4,
    /// The plugin configuration.
    PluginConfiguration = 7,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// Calls the root context's `on_tick` every `millis` milliseconds.
pub fn set_tick_period(millis: u32) -> HostResult<()> {
    // SAFETY: a plain value.
    match unsafe { proxy_set_tick_period_milliseconds(millis) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Resumes a response paused in its headers or body (ABI stream type 1: the response).
pub fn resume_response() -> HostResult<()> {
    // SAFETY: a plain value.
    match unsafe { proxy_continue_stream(1) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Resumes a request paused in its headers or body (ABI stream type 0: the request).
pub fn resume_request() -> HostResult<()> {
    // SAFETY: a plain value.
    match unsafe { proxy_continue_stream(0) } {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Takes ownership of memory the host allocated through the SDK's allocator.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host filled `data` with `size` bytes it allocated by calling the module's
    // exported `proxy_on_memory_allocate` (the SDK's allocator, a Vec<u8> with capacity
    // `size`), and hands ownership to us.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Reads one header; `Ok(None)` when absent.
pub fn get_header(map: Map, name: &str) -> HostResult<Option<Vec<u8>>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers are valid for the call; the host writes back through them.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match status {
        OK => Ok(Some(owned(data, size))),
        NOT_FOUND => Ok(None),
        s => Err(HostError(s)),
    }
}

/// Reads a whole header map in one call, serialized as [`crate::header_map`] reads it.
pub fn get_headers(map: Map) -> HostResult<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers are valid for the call; the host writes back through them.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    match status {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(HostError(s)),
    }
}

/// Reads one header as text (lossy); `None` when absent or on error.
pub fn header_text(map: Map, name: &str) -> Option<String> {
    match get_header(map, name) {
        Ok(Some(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    }
}

/// Sets (replaces) a header.
pub fn set_header<N, V>(map: Map, name: &N, value: &V) -> HostResult<()>
where
    N: AsRef<[u8]> + ?Sized,
    V: AsRef<[u8]> + ?Sized,
{
    let (name, value) = (name.as_ref(), value.as_ref());
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Replaces a whole header map with `pairs` (serialized by [`crate::header_map::encode`])
/// in one host call.
pub fn set_headers(map: Map, pairs: &[u8]) -> HostResult<()> {
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe { proxy_set_header_map_pairs(map as u32, pairs.as_ptr(), pairs.len()) };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Removes those of `names` that `present` (the map as read by [`get_headers`]) holds, or
/// every one of them when the map could not be read.
pub fn remove_present<'a>(
    map: Map,
    present: Option<&[(&[u8], &[u8])]>,
    names: impl IntoIterator<Item = &'a str>,
) -> HostResult<()> {
    for name in names {
        let there = present.is_none_or(|h| crate::header_map::find(h, name).is_some());
        if there {
            remove_header(map, name)?;
        }
    }
    Ok(())
}

/// Removes a header (absent is fine).
pub fn remove_header<N: AsRef<[u8]> + ?Sized>(map: Map, name: &N) -> HostResult<()> {
    let name = name.as_ref();
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) };
    match status {
        OK | NOT_FOUND => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Reads `max_size` bytes of a buffer from `start`.
pub fn get_buffer(buffer: Buffer, start: usize, max_size: usize) -> HostResult<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers are valid for the call; the host writes back through them.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer as u32, start, max_size, &mut data, &mut size) };
    match status {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(HostError(s)),
    }
}

/// Replaces `size` bytes of a buffer from `start` with `value`.
pub fn set_buffer(buffer: Buffer, start: usize, size: usize, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers are valid for the duration of the call.
    let status =
        unsafe { proxy_set_buffer_bytes(buffer as u32, start, size, value.as_ptr(), value.len()) };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

fn property_path(path: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            bytes.push(0);
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// Reads a property; `Ok(None)` when absent.
pub fn get_property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let p = property_path(path);
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers are valid for the call; the host writes back through them.
    let status = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(owned(data, size))),
        NOT_FOUND => Ok(None),
        s => Err(HostError(s)),
    }
}

/// Sets a property (becomes filter state `wasm.<name>`).
pub fn set_property(path: &[&str], value: &[u8]) -> HostResult<()> {
    let p = property_path(path);
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe { proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len()) };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Answers the request locally (the stream must then be paused).
pub fn send_local_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
    let h = crate::header_map::encode(headers);
    let details = crate::routing::LOCAL_REPLY_DETAILS;
    // SAFETY: pointers are valid for the duration of the call.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Current Unix time in nanoseconds (0 if the host cannot tell).
pub fn now_nanos() -> u64 {
    let mut t: u64 = 0;
    // SAFETY: the pointer is valid for the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == OK {
        t
    } else {
        0
    }
}

/// Reads a metadata string leaf property (e.g. endpoint metadata) as text.
pub fn property_text(path: &[&str]) -> Option<String> {
    match get_property(path) {
        Ok(Some(v)) => String::from_utf8(v).ok(),
        _ => None,
    }
}

/// Reads an 8-byte little-endian integer property.
pub fn property_u64(path: &[&str]) -> Option<u64> {
    match get_property(path) {
        Ok(Some(v)) => {
            let bytes: [u8; 8] = v.get(..8)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        }
        _ => None,
    }
}

/// Defines (or finds) a stat of ABI type `kind` (0 counter, 1 gauge, 2 histogram).
pub fn define_metric(kind: u32, name: &str) -> HostResult<u32> {
    let mut id: u32 = 0;
    // SAFETY: pointers are valid for the call; the host writes the id back.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    match status {
        OK => Ok(id),
        s => Err(HostError(s)),
    }
}

/// Adds to a counter.
pub fn increment_metric(id: u32, by: u64) -> HostResult<()> {
    let by = i64::try_from(by).unwrap_or(i64::MAX);
    // SAFETY: plain values.
    let status = unsafe { proxy_increment_metric(id, by) };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Records a histogram sample.
pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: plain values.
    let status = unsafe { proxy_record_metric(id, value) };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}

/// Host status for a compare-and-swap that lost the race.
pub const CAS_MISMATCH: u32 = 8;

/// Reads process-wide shared data: `Ok(None)` when absent, else the value and its version.
pub fn get_shared_data(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: pointers are valid for the call; the host writes back through them.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok(Some((owned(data, size), cas))),
        NOT_FOUND => Ok(None),
        s => Err(HostError(s)),
    }
}

/// Writes process-wide shared data if its version is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
    // SAFETY: pointers are valid for the duration of the call.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        OK => Ok(()),
        s => Err(HostError(s)),
    }
}
