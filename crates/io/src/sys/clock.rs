//! The kernel's monotonic clock as a number: `CLOCK_MONOTONIC`, the clock
//! of Python's `time.monotonic()`, so that times taken by podwire's tests
//! and by the scripts they run can be compared.

use std::time::Duration;

/// `CLOCK_MONOTONIC` now.
pub fn monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is; with a
    // valid clock id and pointer it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_moves_forward_with_std_s_clock() {
        let (a, t) = (super::monotonic(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b, d) = (super::monotonic(), t.elapsed());
        assert!(b > a);
        let diff = (b - a).as_secs_f64() - d.as_secs_f64();
        assert!(diff.abs() < 0.01, "{diff}");
    }
}
