//! Feeds arbitrary bytes to the payload decoder (default and tight limits, so
//! the limit paths are reached too) and re-encodes whatever it accepts. Also
//! feeds the same bytes to the topic and STATE parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparkplug::{AnyTopic, DecodeLimits, Payload, State};

fuzz_target!(|data: &[u8]| {
    let tight = DecodeLimits { max_metrics: 64, max_items: 256, max_depth: 4, max_decompressed_len: 1 << 16 };
    for limits in [DecodeLimits::default(), tight] {
        if let Ok(p) = Payload::decode_with(data, &limits) {
            let mut out = Vec::new();
            if p.encode(&mut out).is_ok() {
                // What we write, we read back and write again byte for byte
                // (bytes, not models: NaN is not equal to itself).
                let again = Payload::decode_with(&out, &limits).expect("re-decodes own encoding");
                let mut twice = Vec::new();
                again.encode(&mut twice).expect("re-encodes");
                assert_eq!(twice, out);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = AnyTopic::parse(s);
    }
    let _ = State::parse(data);
});
