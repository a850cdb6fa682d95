//! `traceparent`: what is accepted has the W3C shape, survives a round trip
//! unchanged, and a context built from any valid ids always parses back.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_ops::trace_context::{SpanId, TRACEPARENT, TraceContext, TraceId};

fn lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    let parsed = TraceContext::parse(data);
    if let Some(ctx) = parsed {
        // The shape: version-trace-parent-flags, lowercase hex, version not ff,
        // and for a later version only `-`-separated additions.
        assert!((55..=512).contains(&data.len()));
        assert!(lower_hex(&data[..2]) && &data[..2] != b"ff");
        assert_eq!([data[2], data[35], data[52]], [b'-'; 3]);
        assert!(lower_hex(&data[3..35]) && lower_hex(&data[36..52]) && lower_hex(&data[53..55]));
        if &data[..2] == b"00" {
            assert_eq!(data.len(), 55);
        } else if data.len() > 55 {
            assert_eq!(data[55], b'-');
        }
        assert_ne!(ctx.trace_id().to_bytes(), [0; 16]);
        assert_ne!(ctx.parent_id().to_bytes(), [0; 8]);
        assert_eq!(ctx.sampled(), ctx.flags() & 1 == 1);

        // Round trip: we send on exactly what we were given, as version 00.
        let out = ctx.to_header_value();
        let out = out.as_bytes();
        assert_eq!(&out[..3], b"00-");
        assert_eq!(&out[3..], &data[3..55]);
        assert_eq!(ctx.to_string().as_bytes(), out);
        assert_eq!(TraceContext::parse(out), Some(ctx));
        let trace = std::str::from_utf8(&data[3..35]).unwrap();
        let parent = std::str::from_utf8(&data[36..52]).unwrap();
        assert_eq!(TraceId::parse(trace), Some(ctx.trace_id()));
        assert_eq!(SpanId::parse(parent), Some(ctx.parent_id()));
        assert_eq!(ctx.trace_id().to_string(), trace);
        assert_eq!(ctx.parent_id().to_string(), parent);
    }

    // Through headers: one value is parsed, a repeated one is ignored.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, value.clone());
        assert_eq!(TraceContext::from_headers(&headers), parsed);
        headers.append(TRACEPARENT, value);
        assert_eq!(TraceContext::from_headers(&headers), None);
    }

    // The other direction: any non-zero ids make a value that parses back.
    if let Some(raw) = data.get(..25) {
        let trace: [u8; 16] = raw[..16].try_into().unwrap();
        let parent: [u8; 8] = raw[16..24].try_into().unwrap();
        assert_eq!(TraceId::from_bytes(trace).is_some(), trace != [0; 16]);
        assert_eq!(SpanId::from_bytes(parent).is_some(), parent != [0; 8]);
        if let (Some(t), Some(p)) = (TraceId::from_bytes(trace), SpanId::from_bytes(parent)) {
            let ctx = TraceContext::new(t, p, raw[24]);
            let value = ctx.to_header_value();
            assert_eq!(value.len(), 55);
            assert_eq!(TraceContext::parse(value.as_bytes()), Some(ctx));
            assert_eq!(ctx.trace_id().to_bytes(), trace);
            assert_eq!(ctx.parent_id().to_bytes(), parent);
        }
    }
});
