//! The sent window is on the live path: once its ring is full, recording scalar samples
//! allocates nothing. Counted by a global allocator in this test binary, on the test's own
//! thread only: the harness allocates on its threads whenever it likes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{SentWindow, StoredSample};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn recording_scalar_samples_allocates_nothing_once_the_ring_is_full() {
    let mut window = SentWindow::new(500);
    let scan: Vec<StoredSample> = (0..100)
        .map(|a| StoredSample {
            device: Some(DeviceId(1)),
            alias: a,
            timestamp_ms: 0,
            value: Value::F64(a as f64),
            quality: Quality::Good,
        })
        .collect();
    // Warm-up fills the ring's slots once.
    for _ in 0..10 {
        for s in &scan {
            window.record(s);
        }
    }
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for scan_no in 10..1_000u64 {
        for s in &scan {
            window.record(s);
        }
        // A probe answered every fifth scan confirms what came before the previous one.
        if scan_no % 5 == 0 {
            window.confirm(window.mark() - 500);
        }
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        after - before,
        0,
        "allocations while recording 99,000 samples"
    );
    assert_eq!(
        window.len(),
        500,
        "count-bound at 500 between confirmations"
    );
}
