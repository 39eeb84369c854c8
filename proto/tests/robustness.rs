//! The decoder never panics: on random bytes, on random mutations of valid
//! payloads, and on random protobuf-shaped input. Whatever it accepts and can
//! encode, it decodes again and re-encodes to the same bytes.

use system_tests::strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use sparkplug::{DecodeLimits, Payload};

fn decode_never_panics(bytes: &[u8]) {
    let small = DecodeLimits {
        max_metrics: 64,
        max_items: 256,
        max_depth: 4,
        max_decompressed_len: 1 << 16,
    };
    for limits in [DecodeLimits::default(), small] {
        if let Ok(p) = Payload::decode_with(bytes, &limits) {
            let mut out = Vec::new();
            if p.encode(&mut out).is_ok() {
                // What we write we read back and write again byte for byte
                // (bytes, not models: NaN is not equal to itself).
                let again =
                    Payload::decode_with(&out, &limits).expect("re-decodes its own encoding");
                let mut twice = Vec::new();
                again.encode(&mut twice).expect("re-encodes");
                assert_eq!(twice, out);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *m {
        Mutation::Set(i, b) => bytes[i % n] = b,
        Mutation::Xor(i, b) => bytes[i % n] ^= b,
        Mutation::Insert(i, b) => bytes.insert(i % (n + 1), b),
        Mutation::Remove(i) => {
            bytes.remove(i % n);
        }
        Mutation::Truncate(i) => bytes.truncate(i % n),
    }
}

/// A protobuf-shaped field: any field number the schema uses (and a few it does
/// not), any wire type, plausible contents.
fn field() -> impl Strategy<Value = Vec<u8>> {
    (1u64..24, 0u64..6, vec(any::<u8>(), 0..12), any::<u64>()).prop_map(|(f, wt, body, v)| {
        let mut out = Vec::new();
        let put = |mut x: u64, out: &mut Vec<u8>| {
            while x >= 0x80 {
                out.push((x as u8) | 0x80);
                x >>= 7;
            }
            out.push(x as u8);
        };
        put(f << 3 | wt, &mut out);
        match wt {
            0 => put(v, &mut out),
            1 => out.extend_from_slice(&v.to_le_bytes()),
            2 => {
                put(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
            }
            5 => out.extend_from_slice(&(v as u32).to_le_bytes()),
            _ => out.extend_from_slice(&body),
        }
        out
    })
}

proptest! {
    #![proptest_config(Config { cases: 1024, ..Config::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        decode_never_panics(&bytes);
    }

    #[test]
    fn mutated_payloads_never_panic(p in strategies::payload(), mutations in vec(mutation(), 1..8)) {
        let mut bytes = p.encode_to_vec().unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_never_panics(&bytes);
    }

    #[test]
    fn protobuf_shaped_input_never_panics(fields in vec(field(), 0..16), nest in any::<bool>()) {
        let mut bytes: Vec<u8> = fields.concat();
        if nest {
            // Wrap as a metric so the same fields are read as metric fields.
            let mut wrapped = vec![0x12];
            let mut len = bytes.len() as u64;
            while len >= 0x80 {
                wrapped.push((len as u8) | 0x80);
                len >>= 7;
            }
            wrapped.push(len as u8);
            wrapped.extend_from_slice(&bytes);
            bytes = wrapped;
        }
        decode_never_panics(&bytes);
    }
}
