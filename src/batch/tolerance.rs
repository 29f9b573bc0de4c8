//! Failure tolerances (`failureTolerance`, `prePull.failureTolerance`): a count, or a
//! percentage of the chosen nodes. One rule for both, apart from the machine and the pre-pull
//! that read it.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A count, or a percentage of `total` rounded down; the error says what is wrong with it.
pub fn tolerance(value: Option<&IntOrString>, total: i32) -> Result<Option<i32>, String> {
    match value {
        None => Ok(None),
        Some(IntOrString::Int(n)) if *n >= 0 => Ok(Some(*n)),
        Some(IntOrString::Int(n)) => Err(format!("{n} is negative")),
        Some(IntOrString::String(text)) => {
            let pct = text
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    format!("{text:?} is not a count or a percentage from 0% to 100%")
                })?;
            Ok(Some((i64::from(total) * i64::from(pct) / 100) as i32))
        }
    }
}
