//! The request's headers in one raw `proxy_get_header_map_pairs` host call
//! (the SDK's wrapper panics on a refused status, and its
//! `get_http_request_headers` copies every name and value into a `String`).
//! Wasm only. Also compiled into bench/probe-filter (`#[path]`), so its
//! floor probes make exactly the filter's call.

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// proxy-wasm's map type of the request headers.
const REQUEST_HEADERS: u32 = 0;

/// The request's headers, serialised (see `header_map`); empty when the
/// host has none or refuses.
pub fn request_header_pairs() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers are live locals for the call.
    let status = unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes at `data` through the SDK's
    // `proxy_on_memory_allocate` (a boxed slice of that length), and hands
    // them over, as the SDK's own `get_map_bytes` takes them.
    unsafe { Vec::from_raw_parts(data, size, size) }
}
