//! What `/proc/<pid>/status` says about how confined a process is, for
//! the tests that compare wasmbox's runners with runc's containers.

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
