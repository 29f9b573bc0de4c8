//! Which wave a workload is in, and how many of a wave may move at once.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::types::Wave;

/// Whether `wave` selects a workload in `namespace` with `labels`. A wave with neither labels
/// nor namespaces selects nothing: an empty choice never means every workload.
pub fn selects(wave: &Wave, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    if wave.match_labels.is_empty() && wave.namespaces.is_empty() {
        return false;
    }
    let by_labels = wave
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_namespace = wave.namespaces.is_empty() || wave.namespaces.iter().any(|n| n == namespace);
    by_labels && by_namespace
}

/// The index of the wave a workload is in: the first that selects it, else the last.
pub fn wave_of(waves: &[Wave], namespace: &str, labels: &BTreeMap<String, String>) -> usize {
    waves
        .iter()
        .position(|w| selects(w, namespace, labels))
        .unwrap_or(waves.len().saturating_sub(1))
}

/// How many of a wave of `size` workloads may be moving at once: `maxInFlight` as a count or a
/// percentage (rounded up, at least one); unset, the whole wave.
pub fn in_flight(limit: Option<&IntOrString>, size: usize) -> Result<usize, String> {
    let bad = |what: String| {
        format!("maxInFlight: {what}; use a count such as 2 or a percentage such as \"25%\"")
    };
    match limit {
        None => Ok(size.max(1)),
        Some(IntOrString::Int(n)) if *n >= 1 => Ok(*n as usize),
        Some(IntOrString::Int(n)) => Err(bad(format!("{n} is less than 1"))),
        Some(IntOrString::String(text)) => {
            let pct = text
                .strip_suffix('%')
                .and_then(|p| p.parse::<usize>().ok())
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| {
                    bad(format!(
                        "{text:?} is not a count or a percentage from 1% to 100%"
                    ))
                })?;
            Ok((size * pct).div_ceil(100).max(1))
        }
    }
}

/// What is wrong with the waves, naming the field; `None` if they are fine.
pub fn spec_error(waves: &[Wave]) -> Option<String> {
    if waves.is_empty() {
        return Some("spec.waves is empty; name at least one wave".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, w) in waves.iter().enumerate() {
        let at = format!("spec.waves[{i}]");
        if w.name.trim().is_empty() {
            return Some(format!(
                "{at}.name is empty; name the wave (it is shown by rollout status)"
            ));
        }
        if !names.insert(w.name.as_str()) {
            return Some(format!(
                "{at}.name {:?} is used twice; wave names must differ",
                w.name
            ));
        }
        if let Err(e) = in_flight(w.max_in_flight.as_ref(), 1) {
            return Some(format!("{at}.{e}"));
        }
        let g = &w.gate;
        if g.min_ready_seconds < 0 || g.max_restarts < 0 {
            return Some(format!(
                "{at}.gate: minReadySeconds and maxRestarts must not be negative"
            ));
        }
        if g.progress_deadline_seconds.is_some_and(|d| d < 1) {
            return Some(format!(
                "{at}.gate.progressDeadlineSeconds must be at least 1"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(labels: &[(&str, &str)], namespaces: &[&str]) -> Wave {
        Wave {
            name: "w".into(),
            match_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            ..Wave::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_wave_selects_nothing_and_the_unselected_go_last() {
        let empty = wave(&[], &[]);
        assert!(!selects(&empty, "a", &labels(&[("tier", "canary")])));
        let waves = [
            wave(&[("tier", "canary")], &[]),
            wave(&[], &["east", "west"]),
            empty,
        ];
        assert_eq!(wave_of(&waves, "x", &labels(&[("tier", "canary")])), 0);
        assert_eq!(wave_of(&waves, "east", &labels(&[])), 1);
        assert_eq!(wave_of(&waves, "south", &labels(&[("tier", "main")])), 2);
        // The first wave that selects wins.
        assert_eq!(wave_of(&waves, "east", &labels(&[("tier", "canary")])), 0);
        // Labels and namespaces together: both must hold.
        let both = wave(&[("tier", "canary")], &["east"]);
        assert!(selects(&both, "east", &labels(&[("tier", "canary")])));
        assert!(!selects(&both, "west", &labels(&[("tier", "canary")])));
    }

    #[test]
    fn in_flight_takes_counts_and_percentages() {
        assert_eq!(in_flight(None, 7), Ok(7));
        assert_eq!(in_flight(None, 0), Ok(1));
        assert_eq!(in_flight(Some(&IntOrString::Int(2)), 7), Ok(2));
        assert_eq!(
            in_flight(Some(&IntOrString::String("25%".into())), 7),
            Ok(2)
        );
        assert_eq!(in_flight(Some(&IntOrString::String("1%".into())), 7), Ok(1));
        for bad in [
            IntOrString::Int(0),
            IntOrString::String("0%".into()),
            IntOrString::String("x".into()),
        ] {
            let e = in_flight(Some(&bad), 7).unwrap_err();
            assert!(e.starts_with("maxInFlight: "), "{e}");
        }
    }

    #[test]
    fn spec_errors_name_the_field() {
        assert!(spec_error(&[]).unwrap().contains("spec.waves is empty"));
        let mut w = wave(&[], &[]);
        w.name = " ".into();
        assert!(
            spec_error(&[w])
                .unwrap()
                .contains("spec.waves[0].name is empty")
        );
        let twice = [wave(&[], &[]), wave(&[], &[])];
        assert!(
            spec_error(&twice)
                .unwrap()
                .contains("spec.waves[1].name \"w\" is used twice")
        );
        let mut w = wave(&[], &[]);
        w.max_in_flight = Some(IntOrString::String("200%".into()));
        assert!(
            spec_error(&[w])
                .unwrap()
                .contains("spec.waves[0].maxInFlight")
        );
        assert_eq!(spec_error(&[wave(&[], &[])]), None);
    }
}
