//! The report window (`economy.report_window_ms`): a device's changes are held and go out
//! as one DDATA per device when the window closes, so a paid link carries one topic, one
//! header and one compression envelope per device and window instead of per scan. The
//! window closes on a fixed period, so no value is held longer than one window.

use crate::modbus::Report;

/// Reports held per device since the window opened.
#[derive(Debug, Default)]
pub struct ReportWindow {
    held: Vec<Option<Report>>,
}

impl ReportWindow {
    pub fn new(devices: usize) -> ReportWindow {
        ReportWindow {
            held: (0..devices).map(|_| None).collect(),
        }
    }

    /// Adds a scan's changes to its device's held report (samples stay in scan order).
    pub fn hold(&mut self, report: &Report) {
        let d = report.device.index();
        if d >= self.held.len() {
            self.held.resize_with(d + 1, || None);
        }
        match &mut self.held[d] {
            Some(held) => held.samples.extend(report.samples.iter().cloned()),
            slot @ None => *slot = Some(report.clone()),
        }
    }

    /// The device's held report, emptying its slot.
    pub fn take(&mut self, device: usize) -> Option<Report> {
        self.held.get_mut(device).and_then(Option::take)
    }

    /// Every held report, device by device; the window is empty afterwards.
    pub fn take_all(&mut self) -> Vec<Report> {
        self.held.iter_mut().filter_map(Option::take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::{DeviceId, Quality, Sample, TagId, Value};
    use std::time::{Duration, UNIX_EPOCH};

    fn report(device: u32, tag: u32, at_s: u64) -> Report {
        Report {
            device: DeviceId(device),
            scan_class: Some(0),
            samples: vec![Sample {
                tag: TagId(tag),
                value: Value::U16(at_s as u16),
                quality: Quality::Good,
                timestamp: UNIX_EPOCH + Duration::from_secs(at_s),
            }],
        }
    }

    #[test]
    fn scans_gather_per_device_in_order_and_leave_once() {
        let mut w = ReportWindow::new(2);
        w.hold(&report(0, 1, 1));
        w.hold(&report(1, 5, 1));
        w.hold(&report(0, 1, 2));
        w.hold(&report(0, 2, 3));
        let d0 = w.take(0).unwrap();
        let tags: Vec<_> = d0
            .samples
            .iter()
            .map(|s| (s.tag.0, s.value.clone()))
            .collect();
        assert_eq!(
            tags,
            [(1, Value::U16(1)), (1, Value::U16(2)), (2, Value::U16(3))]
        );
        assert!(w.take(0).is_none());
        let rest = w.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].device, DeviceId(1));
        assert!(w.take_all().is_empty());
    }
}
