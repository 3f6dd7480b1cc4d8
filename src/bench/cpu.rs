//! Server CPU time, read from `/proc` (Linux only; elsewhere the column stays empty).
//!
//! - `--spawn`: the server runs in this process on its own runtime whose threads all carry one
//!   name, unique to that server (`pp-srv-PORT`, so two servers in one process, as in tests,
//!   are told apart); its CPU time is the sum over `/proc/self/task/*` with that name, read
//!   from `schedstat` (nanoseconds) or, where the kernel has no schedstat, `stat` (clock ticks).
//! - `--server-pid PID`: the whole process's user + system time from `/proc/PID/stat`,
//!   which includes anything else that process does.

use std::path::Path;
use std::time::Duration;

/// The name every thread of a spawned server's runtime carries (at most 15 bytes: Linux
/// truncates longer thread names).
pub fn server_thread_name(port: u16) -> String {
    format!("pp-srv-{port}")
}

/// Clock ticks per second in `/proc/*/stat`. `sysconf(_SC_CLK_TCK)` is 100 on every Linux
/// architecture Rust targets; reading it would need `unsafe` (the crate forbids it).
const TICKS_PER_SECOND: u64 = 100;

/// Where server CPU time is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSource {
    /// The spawned server's threads in this process, by their name.
    SpawnedThreads(String),
    /// A whole other process.
    Process(u32),
    /// Not measured (a remote server and no `--server-pid`).
    None,
}

impl CpuSource {
    /// What the CPU column means, for the report.
    pub fn label(&self) -> String {
        match self {
            Self::SpawnedThreads(name) => format!(
                "user+system CPU of the in-process server's threads ({name}), from /proc/self/task/*/schedstat"
            ),
            Self::Process(pid) => {
                format!("user+system CPU of process {pid} (all its threads), from /proc/{pid}/stat")
            }
            Self::None => "not measured (pass --spawn, or --server-pid for a local server)".into(),
        }
    }

    /// CPU time used so far, or `None` where it cannot be read.
    pub fn sample(&self) -> Option<Duration> {
        match self {
            Self::SpawnedThreads(name) => threads_cpu(Path::new("/proc/self/task"), name),
            Self::Process(pid) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_cpu(&s)),
            Self::None => None,
        }
    }
}

fn threads_cpu(tasks: &Path, name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut found = false;
    for entry in std::fs::read_dir(tasks).ok()?.flatten() {
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended between the listing and the read
        };
        if comm.trim_end() != name {
            continue;
        }
        let cpu = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| schedstat_cpu(&s))
            .or_else(|| {
                std::fs::read_to_string(dir.join("stat"))
                    .ok()
                    .and_then(|s| stat_cpu(&s))
            });
        if let Some(cpu) = cpu {
            total += cpu;
            found = true;
        }
    }
    found.then_some(total)
}

/// `schedstat`: "run-time-ns wait-time-ns timeslices".
fn schedstat_cpu(text: &str) -> Option<Duration> {
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// `stat`: utime and stime are fields 14 and 15; the command name (field 2) is in parentheses
/// and may contain spaces, so fields are counted after the last `)`.
fn stat_cpu(text: &str) -> Option<Duration> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime (14) is index 11, stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_adds_user_and_system_ticks_even_with_spaces_in_the_name() {
        let line =
            "4242 (pp server) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        assert_eq!(stat_cpu(line), Some(Duration::from_secs(3)));
        assert_eq!(stat_cpu("garbage"), None);
    }

    #[test]
    fn schedstat_cpu_reads_nanoseconds() {
        assert_eq!(
            schedstat_cpu("1500000000 20000 31\n"),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn this_process_threads_can_be_found_by_name() {
        let handle = std::thread::Builder::new()
            .name("pp-cputest".into())
            .spawn(|| {
                let mut x = 0u64;
                for i in 0..2_000_000u64 {
                    x = x.wrapping_add(i * i);
                }
                std::hint::black_box(x);
                std::thread::sleep(Duration::from_millis(200));
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        if Path::new("/proc/self/task").exists() {
            assert!(threads_cpu(Path::new("/proc/self/task"), "pp-cputest").is_some());
            assert!(threads_cpu(Path::new("/proc/self/task"), "no-such-thread").is_none());
        }
        handle.join().unwrap();
    }
}
