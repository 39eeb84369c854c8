//! Exactly once, as a property: whatever the batches, their order, duplicates inside and
//! across them, moves between the recent and main tables and restarts, the store holds each
//! (metric, timestamp) once, with the value of the first copy that arrived.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use host_app::history::{
    HistoryStore, MetricId, Quality, RetentionPolicy, Sample, SampleValue, TimeRange,
};
use host_app_testkit::history::{TempStore, register};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Step {
    /// (metric index, ts offset, value, is_historical)
    Append(Vec<(usize, u64, i64, bool)>),
    /// Move the recent table into the main one.
    Fold,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => proptest::collection::vec((0_usize..3, 0_u64..300, any::<i64>(), any::<bool>()), 0..80)
            .prop_map(Step::Append),
        1 => Just(Step::Fold),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn each_metric_and_timestamp_is_kept_once_with_its_first_value(
        steps in proptest::collection::vec(step(), 1..12)
    ) {
        let mut t = TempStore::new();
        let ids: Vec<MetricId> = (0..3).map(|i| register(&*t.store, &format!("M{i}"))).collect();
        let mut model: BTreeMap<(MetricId, u64), Sample> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Append(batch) => {
                    let samples: Vec<Sample> = batch
                        .into_iter()
                        .map(|(m, offset, v, is_historical)| Sample {
                            metric: ids[m],
                            ts: T0 + offset,
                            value: SampleValue::I64(v),
                            quality: Quality::GOOD,
                            is_historical,
                        })
                        .collect();
                    let mut fresh = 0;
                    for s in &samples {
                        if let Entry::Vacant(slot) = model.entry((s.metric, s.ts)) {
                            slot.insert(s.clone());
                            fresh += 1;
                        }
                    }
                    let outcome = t.store.append(&samples).unwrap();
                    prop_assert_eq!(outcome.inserted, fresh);
                    prop_assert_eq!(outcome.duplicates, samples.len() as u64 - fresh);
                }
                Step::Fold => {
                    t.store.apply_retention(&RetentionPolicy::default(), 0, 1).unwrap();
                }
                Step::Reopen => t.reopen(),
            }
        }
        for &id in &ids {
            let stored = t.store.range(id, TimeRange::new(0, u64::MAX), u32::MAX).unwrap();
            let expected: Vec<Sample> = model
                .range((id, 0)..=(id, u64::MAX))
                .map(|(_, s)| s.clone())
                .collect();
            prop_assert_eq!(&stored, &expected);
            let latest = t.store.latest(&[id]).unwrap();
            prop_assert_eq!(latest.first(), expected.last());
        }
    }
}
