//! `process.apparmorProfile`, where AppArmor is enabled.
//!
//! runc asks for the profile on its exec of the container's process; the
//! runner does not exec, so it changes profile at once (what
//! `aa_change_profile` does). Where AppArmor is not enabled, a profile in
//! the spec fails Create, as runc's write of it fails: a runner never runs
//! with less than the spec asks. `unconfined` asks for nothing.

use super::ConfineError;

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// Whether AppArmor is enabled on this node.
pub fn enabled() -> bool {
    std::fs::read_to_string(ENABLED).is_ok_and(|v| v.starts_with('Y'))
}

/// Changes to `profile` now.
pub fn apply(profile: Option<&str>) -> Result<(), ConfineError> {
    let Some(profile) = profile.filter(|p| *p != "unconfined") else {
        return Ok(());
    };
    let failed = |reason: String| ConfineError::AppArmor {
        profile: profile.to_string(),
        reason,
    };
    if !enabled() {
        return Err(failed(
            "AppArmor is not enabled on this node, so the profile cannot be applied".into(),
        ));
    }
    let command = format!("changeprofile {profile}");
    std::fs::write("/proc/self/attr/apparmor/current", &command)
        .or_else(|_| std::fs::write("/proc/self/attr/current", &command))
        .map_err(|e| failed(format!("cannot change to it: {e}")))
}
