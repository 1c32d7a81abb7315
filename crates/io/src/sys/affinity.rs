//! CPU placement: the calling thread pinned to one CPU
//! (`sched_setaffinity`).

use std::io;

/// Pins the calling thread to CPU `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond what a CPU set holds"),
        ));
    }
    // SAFETY: an all-zero `cpu_set_t` is the empty set; CPU_SET writes
    // inside it (`cpu` was checked against its size); sched_setaffinity
    // reads `size_of::<cpu_set_t>()` bytes from the set, alive for the call,
    // and pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs the calling thread may run on.
pub fn allowed() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero `cpu_set_t` is a valid value; sched_getaffinity
    // writes at most `size_of::<cpu_set_t>()` bytes into it; CPU_ISSET
    // reads inside it for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_only() {
        let cpus = allowed().unwrap();
        assert!(!cpus.is_empty());
        let cpu = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(allowed().unwrap(), vec![cpu]);
            // SAFETY: sched_getcpu takes nothing and returns a number.
            let now = unsafe { libc::sched_getcpu() };
            assert_eq!(now, cpu as i32);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(1 << 20).is_err());
    }
}
