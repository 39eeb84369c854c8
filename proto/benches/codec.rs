//! Codec throughput: a 100-metric DDATA (aliases, Double values, per-metric
//! timestamps) encoded and decoded by the typed codec and by raw prost on the
//! same bytes, in the same run. Prints metrics per second for each, the ratio
//! typed/raw against the 50% target, and bytes per metric on the wire.
//!
//! Run: `cargo bench -p sparkplug --bench codec`

use std::hint::black_box;
use std::time::{Duration, Instant};

use prost::Message;
use sparkplug::{Metric, Payload, Seq, pb};

const METRICS: usize = 100;
const ITERATIONS: u32 = 20_000;
const ROUNDS: usize = 7;
const TARGET: f64 = 0.50;

fn ddata() -> Payload {
    let t0 = 1_764_133_200_000u64;
    let mut p = Payload::new(t0).with_seq(Seq::new(17));
    for i in 0..METRICS as u64 {
        p.metrics.push(
            Metric::aliased(i + 1, 230.0 + i as f64 * 0.173).with_timestamp(t0 - 1000 + i * 7),
        );
    }
    p
}

/// Best times of `ROUNDS` rounds of `ITERATIONS` calls of `a` and of `b`,
/// rounds interleaved so both see the same machine load (best = least disturbed).
fn best_pair(mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..ITERATIONS {
            f();
        }
        start.elapsed()
    };
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        best_a = best_a.min(time(&mut a));
        best_b = best_b.min(time(&mut b));
    }
    (best_a, best_b)
}

fn metrics_per_sec(d: Duration) -> f64 {
    (METRICS as f64 * f64::from(ITERATIONS)) / d.as_secs_f64()
}

fn report(what: &str, ours: Duration, raw: Duration) -> bool {
    let (o, r) = (metrics_per_sec(ours), metrics_per_sec(raw));
    let ratio = o / r;
    let verdict = if ratio >= TARGET { "meets" } else { "BELOW" };
    println!(
        "{what:<7} typed {:>6.2} M metrics/s | raw prost {:>6.2} M metrics/s | ratio {:>5.1}% ({verdict} the {:.0}% target)",
        o / 1e6,
        r / 1e6,
        ratio * 100.0,
        TARGET * 100.0
    );
    ratio >= TARGET
}

fn main() {
    let payload = ddata();
    let bytes = payload.encode_to_vec().expect("encodes");
    let raw = pb::Payload::decode(&bytes[..]).expect("prost decodes");
    assert_eq!(
        raw.encode_to_vec(),
        bytes,
        "typed and prost bytes must be identical"
    );
    assert_eq!(Payload::decode(&bytes).expect("decodes"), payload);

    // Warm up caches and the allocator.
    let mut buf = Vec::with_capacity(bytes.len());
    for _ in 0..2000 {
        buf.clear();
        payload.encode(&mut buf).expect("encodes");
        black_box(Payload::decode(black_box(&bytes)).ok());
        black_box(pb::Payload::decode(black_box(&bytes[..])).ok());
    }

    let (typed_decode, raw_decode) = best_pair(
        || {
            black_box(Payload::decode(black_box(&bytes)).ok());
        },
        || {
            black_box(pb::Payload::decode(black_box(&bytes[..])).ok());
        },
    );
    let mut out_typed = Vec::with_capacity(bytes.len());
    let mut out_raw = Vec::with_capacity(bytes.len());
    let (typed_encode, raw_encode) = best_pair(
        || {
            out_typed.clear();
            black_box(&payload).encode(&mut out_typed).ok();
            black_box(&out_typed);
        },
        || {
            out_raw.clear();
            black_box(&raw).encode(&mut out_raw).ok();
            black_box(&out_raw);
        },
    );

    println!(
        "sparkplug codec: DDATA of {METRICS} aliased Double metrics with per-metric timestamps"
    );
    println!(
        "wire: {} bytes per payload, {:.2} bytes per metric",
        bytes.len(),
        bytes.len() as f64 / METRICS as f64
    );
    let decode_ok = report("decode", typed_decode, raw_decode);
    let encode_ok = report("encode", typed_encode, raw_encode);
    println!(
        "result: {}",
        if decode_ok && encode_ok {
            "both meet the target"
        } else {
            "BELOW TARGET"
        }
    );
}
