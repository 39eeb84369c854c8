//! The scratch space of a batch's exactly-once check: the samples accepted so far and, per
//! metric, their timestamps, kept from batch to batch so a commit allocates nothing once
//! the buffers have grown to the batch size.
//!
//! Timestamps come from clients, so they are never hashed: the map is keyed by our own
//! metric ids (see `Recent`), and each metric's timestamps of the batch are a sorted list
//! (live samples arrive in time order, so the common case is a push; out-of-order ones
//! cost an insert, as in `Recent`).

use rustc_hash::FxHashMap;

use crate::history::types::{MetricId, Sample};

#[derive(Debug, Default)]
pub(super) struct Intake {
    /// The samples of the batch to store, in the order first seen.
    pub(super) accepted: Vec<Sample>,
    /// Per metric of the batch, its list in `runs`.
    slots: FxHashMap<MetricId, usize>,
    /// Per metric of the batch: (ts, index in `accepted`), sorted by ts. Lists past `used`
    /// are empty, kept for their capacity.
    runs: Vec<Vec<(u64, usize)>>,
    used: usize,
}

impl Intake {
    /// Starts a batch.
    pub(super) fn clear(&mut self) {
        self.accepted.clear();
        for run in &mut self.runs[..self.used] {
            run.clear();
        }
        self.slots.clear();
        self.used = 0;
    }

    /// Where in `accepted` the batch already holds (metric, ts), if it does.
    pub(super) fn earlier(&self, metric: MetricId, ts: u64) -> Option<usize> {
        let run = &self.runs[*self.slots.get(&metric)?];
        if run.last().is_none_or(|&(last, _)| last < ts) {
            return None;
        }
        run.binary_search_by_key(&ts, |&(t, _)| t)
            .ok()
            .map(|i| run[i].1)
    }

    /// Adds `sample`, whose (metric, ts) the batch does not hold yet.
    pub(super) fn accept(&mut self, sample: &Sample) {
        let slot = *self.slots.entry(sample.metric).or_insert_with(|| {
            self.used += 1;
            if self.runs.len() < self.used {
                self.runs.push(Vec::new());
            }
            self.used - 1
        });
        let run = &mut self.runs[slot];
        let entry = (sample.ts, self.accepted.len());
        if run.last().is_none_or(|&(last, _)| last < sample.ts) {
            run.push(entry);
        } else {
            let at = run.partition_point(|&(t, _)| t < sample.ts);
            run.insert(at, entry);
        }
        self.accepted.push(sample.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::types::{Quality, SampleValue};

    fn s(metric: i64, ts: u64) -> Sample {
        Sample {
            metric: MetricId(metric),
            ts,
            value: SampleValue::I64(ts as i64),
            quality: Quality::GOOD,
            is_historical: false,
        }
    }

    #[test]
    fn finds_earlier_samples_in_and_out_of_order_and_forgets_them_per_batch() {
        let mut intake = Intake::default();
        for (metric, ts) in [(1, 10), (2, 10), (1, 30), (1, 20), (3, 5), (1, 5)] {
            assert_eq!(intake.earlier(MetricId(metric), ts), None);
            intake.accept(&s(metric, ts));
        }
        assert_eq!(intake.earlier(MetricId(1), 20), Some(3));
        assert_eq!(intake.earlier(MetricId(1), 5), Some(5));
        assert_eq!(intake.earlier(MetricId(1), 30), Some(2));
        assert_eq!(intake.earlier(MetricId(2), 10), Some(1));
        assert_eq!(intake.earlier(MetricId(1), 25), None);
        assert_eq!(intake.earlier(MetricId(4), 10), None);
        intake.clear();
        assert!(intake.accepted.is_empty());
        assert_eq!(intake.earlier(MetricId(1), 20), None);
        intake.accept(&s(3, 7));
        assert_eq!(intake.earlier(MetricId(3), 7), Some(0));
        assert_eq!(intake.earlier(MetricId(1), 10), None);
    }
}
