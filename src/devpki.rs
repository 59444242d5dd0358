//! Throwaway dev PKI for `certs dev-pki` and the demo. (stub until merged)

use std::path::Path;

pub struct DevPki;

impl std::fmt::Display for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stub")
    }
}

pub fn write(out: &Path, names: &[String]) -> anyhow::Result<DevPki> {
    let _ = (out, names);
    anyhow::bail!("stub")
}
