//! Reading activation results back (tests and the demo): the final outcome of every send
//! from the at-least-once activation records, ranked as the campaign report ranks them.

use std::collections::BTreeMap;

use ariane_shared::lake::ActivationRecord;

fn rank(outcome: &str) -> u8 {
    match outcome {
        "sent" | "audience_added" | "audience_removed" => 4,
        "suppressed" => 3,
        "holdout" => 2,
        _ => 1,
    }
}

/// One record per send key: its final outcome (sent over suppressed over holdout over
/// deferred; the latest decision among equals).
pub fn final_outcomes(records: &[ActivationRecord]) -> Vec<ActivationRecord> {
    let mut best: BTreeMap<&str, &ActivationRecord> = BTreeMap::new();
    for r in records {
        let better = match best.get(r.send_key.as_str()) {
            None => true,
            Some(b) => (rank(&r.outcome), r.decided_at) > (rank(&b.outcome), b.decided_at),
        };
        if better {
            best.insert(&r.send_key, r);
        }
    }
    best.into_values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn rec(send: &str, outcome: &str, t: i64) -> ActivationRecord {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000 + t, 0).unwrap();
        ActivationRecord {
            activation_key: "a".into(),
            send_key: send.into(),
            campaign: "c".into(),
            segment: "s".into(),
            run_id: "r".into(),
            profile_id: "p".into(),
            change: "entered".into(),
            group: "treated".into(),
            channel: None,
            outcome: outcome.into(),
            reason: None,
            destination: None,
            template: None,
            decided_at: at,
            conversion_until: at,
        }
    }

    #[test]
    fn the_final_outcome_wins() {
        let out = final_outcomes(&[
            rec("a", "deferred", 0),
            rec("a", "sent", 10),
            rec("a", "deferred", 20),
            rec("b", "holdout", 0),
            rec("b", "holdout", 5),
        ]);
        assert_eq!(
            out.iter().map(|r| (r.send_key.as_str(), r.outcome.as_str())).collect::<Vec<_>>(),
            vec![("a", "sent"), ("b", "holdout")]
        );
    }
}
