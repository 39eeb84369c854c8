//! Trend downsampling in SQL checked against the same computation done in memory.

use host_app::history::{
    Bucket, HistoryStore, MetricId, RetentionPolicy, Sample, SampleValue, TimeRange,
};
use host_app_testkit::history::{TempStore, register, sample, series};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;

/// The expected buckets, computed straight from the samples.
fn reference(samples: &[Sample], range: TimeRange, buckets: u32) -> Vec<Bucket> {
    let width = range.bucket_width(buckets);
    let mut sorted: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.ts >= range.from && s.ts < range.to)
        .collect();
    sorted.sort_by_key(|s| s.ts);
    let mut out: Vec<Bucket> = Vec::new();
    let mut sums: Vec<(f64, u64)> = Vec::new();
    for s in sorted {
        let start = range.from + (s.ts - range.from) / width * width;
        if out.last().is_none_or(|b| b.start != start) {
            out.push(Bucket {
                start,
                end: (start + width).min(range.to),
                count: 0,
                min: None,
                max: None,
                avg: None,
                last: s.clone(),
            });
            sums.push((0.0, 0));
        }
        let (b, sum) = (out.last_mut().unwrap(), sums.last_mut().unwrap());
        b.count += 1;
        b.last = s.clone();
        if let Some(x) = s.value.as_f64() {
            b.min = Some(b.min.map_or(x, |m| m.min(x)));
            b.max = Some(b.max.map_or(x, |m| m.max(x)));
            sum.0 += x;
            sum.1 += 1;
            b.avg = Some(sum.0 / sum.1 as f64);
        }
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * scale.max(1.0),
        _ => false,
    }
}

fn check(got: &[Bucket], samples: &[Sample], range: TimeRange, buckets: u32) -> Result<(), String> {
    let want = reference(samples, range, buckets);
    if got.len() != want.len() {
        return Err(format!("{} buckets, expected {}", got.len(), want.len()));
    }
    let scale = samples
        .iter()
        .filter_map(|s| s.value.as_f64())
        .fold(0.0_f64, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(&want) {
        let ok = (g.start, g.end, g.count) == (w.start, w.end, w.count)
            && close(g.min, w.min, scale)
            && close(g.max, w.max, scale)
            && close(g.avg, w.avg, scale)
            && (g.last.ts, g.last.quality, g.last.is_historical)
                == (w.last.ts, w.last.quality, w.last.is_historical)
            && g.last.value.same_as(&w.last.value);
        if !ok {
            return Err(format!("got {g:?}\nexpected {w:?}"));
        }
    }
    Ok(())
}

#[test]
fn a_day_at_1_hz_downsampled_to_1000_points_matches_memory() {
    let t = TempStore::new();
    let id = register(&*t.store, "Pressure");
    let day = series(id, T0, 86_400, 1_000);
    for chunk in day.chunks(5_000) {
        t.store.append(chunk).unwrap();
    }
    let range = TimeRange::new(T0, T0 + 86_400_000);
    let got = t.store.downsample(id, range, 1_000).unwrap();
    assert!(
        got.len() <= 1_000 && got.len() > 900,
        "{} buckets",
        got.len()
    );
    assert_eq!(got.iter().map(|b| b.count).sum::<u64>(), 86_400);
    check(&got, &day, range, 1_000).unwrap();
}

#[test]
fn non_numeric_buckets_carry_only_count_and_last() {
    let t = TempStore::new();
    let id = register(&*t.store, "State");
    let samples = vec![
        sample(id, T0, SampleValue::Text("idle".into())),
        sample(id, T0 + 10, SampleValue::Text("run".into())),
        sample(id, T0 + 20, SampleValue::F64(f64::NAN)),
        sample(id, T0 + 110, SampleValue::Bytes(vec![1, 2])),
        sample(id, T0 + 120, SampleValue::U64(u64::MAX)),
        sample(id, T0 + 130, SampleValue::Null),
    ];
    t.store.append(&samples).unwrap();
    let range = TimeRange::new(T0, T0 + 200);
    let got = t.store.downsample(id, range, 2).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].count, got[0].min, got[0].avg), (3, None, None));
    assert!(matches!(got[0].last.value, SampleValue::F64(v) if v.is_nan()));
    assert_eq!((got[1].count, got[1].max), (3, Some(u64::MAX as f64)));
    assert_eq!(got[1].last.value, SampleValue::Null);
    check(&got, &samples, range, 2).unwrap();
}

fn value() -> impl Strategy<Value = SampleValue> {
    prop_oneof![
        6 => (-1.0e6..1.0e6_f64).prop_map(SampleValue::F64),
        2 => (-1_000_000_i64..1_000_000).prop_map(SampleValue::I64),
        1 => (0_u64..2_000_000).prop_map(SampleValue::U64),
        1 => any::<bool>().prop_map(SampleValue::Bool),
        1 => Just(SampleValue::F64(f64::NAN)),
        1 => "[a-z]{0,4}".prop_map(SampleValue::Text),
        1 => Just(SampleValue::Null),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn downsampling_matches_an_in_memory_computation(
        points in proptest::collection::btree_map(0_u64..20_000, (value(), any::<bool>()), 0..400),
        from in 0_u64..10_000,
        span in 1_u64..20_000,
        buckets in 1_u32..64,
        split in 0_usize..400,
    ) {
        let t = TempStore::new();
        let id: MetricId = register(&*t.store, "Random");
        let samples: Vec<Sample> = points
            .into_iter()
            .map(|(offset, (value, is_historical))| Sample {
                is_historical,
                ..sample(id, T0 + offset, value)
            })
            .collect();
        // Two batches in either order, the first moved from the recent table into the
        // main one (a retention step with no limits only does that): neither storage order
        // nor which table holds a sample may matter.
        let split = split.min(samples.len());
        t.store.append(&samples[split..]).unwrap();
        t.store.apply_retention(&RetentionPolicy::default(), 0, 1).unwrap();
        t.store.append(&samples[..split]).unwrap();
        let range = TimeRange::new(T0 + from, T0 + from + span);
        let got = t.store.downsample(id, range, buckets).unwrap();
        prop_assert!(got.len() <= buckets as usize);
        if let Err(e) = check(&got, &samples, range, buckets) {
            prop_assert!(false, "{}", e);
        }
    }
}
