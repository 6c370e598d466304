//! What `/proc` says about a process: how confined it is (for the tests
//! that compare wasmbox's runners with runc's containers), its resident
//! memory, and which process is a container's shim.

/// The fields of `/proc/<pid>/status` that say how confined a process
/// is: capabilities, no_new_privs, seccomp and its filter count, uids.
pub fn proc_status(pid: u32) -> std::collections::HashMap<String, String> {
    const FIELDS: [&str; 7] = [
        "CapEff",
        "CapBnd",
        "CapPrm",
        "NoNewPrivs",
        "Seccomp",
        "Seccomp_filters",
        "Uid",
    ];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| FIELDS.contains(k))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The resident memory of `pid` in KiB (`VmRSS`), if it still runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The wasmbox shim started for task `id` (under ctr, each container's;
/// under CRI, the pod's, started for its sandbox), if it runs.
pub fn shim_of(id: &str) -> Option<u32> {
    let needle = format!("-id {id} ");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("containerd-shim-wasmbox-v1") && cmdline.contains(&needle))
                .then_some(pid)
        })
}
