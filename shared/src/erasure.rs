//! The erasure report: what identity removed from DynamoDB for one erasure request, and
//! what the purge (`functions/purge`) is to remove, then removed, from the lake and the
//! landing bucket. Written by identity to `reports/erasures/<kind>-<keyed hash>.json`
//! (keyed hashes and profile ids only, never a clear value), rewritten by the purge.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identifiers::IdentifierKind;

/// An identifier by kind and keyed hash (`identifiers::identifier_hash`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HashedIdentifier {
    pub kind: IdentifierKind,
    pub hash: String,
}

/// What the purge looks for in the stores Ariane writes (pseudonymous values only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeTargets {
    /// Identity keys of the person's evidence: the `anchor_id` of their events and the
    /// `identifier_hash` of their links. A row carrying one is the person's: removed.
    #[serde(default)]
    pub identity_keys: BTreeSet<String>,
    /// The profile ids the person had: snapshots, memberships, activation records and
    /// links naming one are removed.
    #[serde(default)]
    pub profile_ids: BTreeSet<String>,
    /// Keyed hashes of the identifiers suppressed. A row carrying one that is not
    /// otherwise the person's (another member of a family that shared the e-mail) keeps
    /// the row and loses the value.
    #[serde(default)]
    pub identifier_hashes: BTreeSet<String>,
}

impl PurgeTargets {
    pub fn is_empty(&self) -> bool {
        self.identity_keys.is_empty() && self.profile_ids.is_empty() && self.identifier_hashes.is_empty()
    }

    /// Joins another erasure's targets into these.
    pub fn extend(&mut self, other: &PurgeTargets) {
        self.identity_keys.extend(other.identity_keys.iter().cloned());
        self.profile_ids.extend(other.profile_ids.iter().cloned());
        self.identifier_hashes.extend(other.identifier_hashes.iter().cloned());
    }
}

/// What a purge removed, per store (`landing`, `events`, `rejects`, `links`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCounts {
    /// Objects rewritten without the person's rows (or values).
    pub objects_rewritten: usize,
    /// Objects deleted (every row was the person's, or a format the purge cannot rewrite
    /// row by row).
    pub objects_deleted: usize,
    /// Earlier versions of those objects deleted.
    pub versions_deleted: usize,
    /// Rows removed.
    pub rows_removed: usize,
    /// Values blanked in rows that stay (a shared value in another person's row).
    pub values_blanked: usize,
    /// Items deleted (the activation ledger's audience memberships).
    pub items_deleted: usize,
}

impl PurgeCounts {
    pub fn add(&mut self, o: &PurgeCounts) {
        self.objects_rewritten += o.objects_rewritten;
        self.objects_deleted += o.objects_deleted;
        self.versions_deleted += o.versions_deleted;
        self.rows_removed += o.rows_removed;
        self.values_blanked += o.values_blanked;
        self.items_deleted += o.items_deleted;
    }
}

/// Where the purge of one erasure stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PurgeState {
    /// Waiting for the next purge run (daily, or `ariane-local purge`).
    Pending { targets: PurgeTargets },
    /// Done: the targets are dropped from the report (they would be the last copy of the
    /// person's lake hashes besides DynamoDB's suppression entries).
    Done { run: String, completed_at: DateTime<Utc>, removed: BTreeMap<String, PurgeCounts> },
}

/// What one erasure request removed, written to `reports/erasures/` and printed by
/// `ariane-local identity erasure-report`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// The identifier the request named (kind and keyed hash).
    pub request: HashedIdentifier,
    pub completed_at: DateTime<Utc>,
    /// The profile erased (`None`: the identifier resolved to no profile, or an earlier
    /// attempt erased it and this report is rewritten by a retry).
    pub profile_id: Option<String>,
    /// Evidence (identifier sets) removed from DynamoDB with the profile.
    pub evidence_removed: usize,
    /// Identifiers kept only as suppression entries (hash, no value): an old export
    /// re-ingested does not re-create the person. `None` when an earlier attempt did it.
    pub identifiers_suppressed: Option<usize>,
    /// Profiles of other people that held the value as a contact address or identifier
    /// (a shared family e-mail) and no longer do.
    #[serde(default)]
    pub other_profiles_cleared: usize,
    /// Lake links rewritten to point nowhere (segments drop the person at their next run).
    pub lake_links_rewritten: usize,
    /// Whether `ProfileErased` went to the outbound events queue.
    pub announced: bool,
    /// The lake and landing purge.
    pub purge: PurgeState,
    /// What this erasure does not reach, with how long it stays (docs/privacy.md).
    pub not_reached: Vec<String>,
}

/// Stores an erasure does not reach, and for how long they keep the person.
pub const ERASURE_NOT_REACHED: &[&str] = &[
    "messages already delivered to destinations (ESPs, SMS gateways, push providers, ad platforms): erased by them on ProfileErased and the audience remove rows",
    "the audience remove rows themselves (audiences/<campaign>/<platform>/run=erasure-*/): the ad platforms' own hashes, needed to take the person out",
    "activation send records (profile ids, no contact) until their 30-day TTL",
    "DynamoDB point-in-time recovery backups (35 days)",
    "copies made outside Ariane (lake exports, BI extracts)",
];

/// Sent by the purge to identity's queue (`{"forget": {...}}`): evidence of other people
/// (found through the lake: their events carried the value) that holds a suppressed
/// identifier in clear loses it, and so do the profiles built from it (a family e-mail
/// erased at one member's request stops being the others' contact address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRequest {
    /// Keyed hashes of the suppressed identifiers.
    pub hashes: BTreeSet<String>,
    /// Identity keys of the evidence holding them.
    pub evidence: BTreeSet<String>,
}

/// At most this many evidence keys per forget message (a message stays far below SQS's
/// 256 KiB).
pub const FORGET_CHUNK: usize = 500;

/// The lake prefix of the erasure reports.
pub const REPORTS_PREFIX: &str = "reports/erasures/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_report_round_trips_and_names_its_status() {
        let mut targets = PurgeTargets::default();
        targets.identity_keys.insert("k1".into());
        let report = ErasureReport {
            request: HashedIdentifier { kind: IdentifierKind::Email, hash: "h".into() },
            completed_at: Utc::now(),
            profile_id: Some("p_1".into()),
            evidence_removed: 1,
            identifiers_suppressed: Some(2),
            other_profiles_cleared: 0,
            lake_links_rewritten: 1,
            announced: true,
            purge: PurgeState::Pending { targets },
            not_reached: vec![],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["purge"]["status"], "pending");
        assert_eq!(json["request"]["kind"], "email");
        assert_eq!(serde_json::from_value::<ErasureReport>(json).unwrap(), report);
    }
}
