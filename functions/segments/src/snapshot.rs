//! The run's profile snapshot: every profile of the profiles table as of the start of the
//! run, pseudonymous fields only (the [`ProfileReader`]'s summaries: the DynamoDB adapter
//! projects consents, identifier kinds and activity dates, never a clear identifier),
//! written to the lake per profile partition. A re-run of the same run id reuses the
//! snapshot already written, so it computes the same members.

use ariane_shared::lake::{self, ProfileState};
use ariane_shared::ports::{BlobStore, ProfileReader};
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::ports::{get_json, put_json, put_parquet};

/// The marker that a run's snapshot is complete (beside the snapshot folder, so the
/// `profiles` table never lists it).
pub fn marker_key(run_id: &str) -> String {
    format!("segments/_runs/{run_id}/profiles.json")
}

/// The content of [`marker_key`], written last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMarker {
    pub run_id: String,
    pub partitions: usize,
    /// Profiles in the snapshot.
    pub profiles: usize,
}

/// Writes the snapshot of `run_id` (unless a complete one with the same partition count
/// exists) and returns the number of profiles in it. A marker that cannot be decoded is
/// an error.
pub async fn ensure_snapshot(
    blobs: &dyn BlobStore,
    profiles: &dyn ProfileReader,
    bucket: &str,
    run_id: &str,
    partitions: usize,
) -> Result<usize, RunError> {
    let marker_key = marker_key(run_id);
    if let Some(marker) = get_json::<SnapshotMarker>(blobs, bucket, &marker_key).await? {
        if marker.partitions == partitions {
            return Ok(marker.profiles);
        }
    }
    let mut buckets: Vec<Vec<ProfileState>> = vec![Vec::new(); partitions];
    let summaries = profiles.summaries().await?;
    let total = summaries.len();
    for p in summaries {
        buckets[lake::profile_bucket(&p.profile_id, partitions)].push(p);
    }
    for (k, mut states) in buckets.into_iter().enumerate() {
        states.sort_by(|a, b| a.profile_id.cmp(&b.profile_id));
        let key = lake::profiles_snapshot_key(run_id, k);
        put_parquet(blobs, bucket, &key, lake::profiles_schema(), lake::profiles_batch(&states)).await?;
    }
    let marker = SnapshotMarker { run_id: run_id.to_string(), partitions, profiles: total };
    put_json(blobs, bucket, &marker_key, "the snapshot marker", &marker).await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::adapters::memory::{MemBlobs, MemProfiles};
    use ariane_shared::profile::{ProfileDoc, ProfileItem};
    use bytes::Bytes;

    fn profile(id: &str) -> ProfileItem {
        ProfileItem { profile_id: id.into(), component: format!("c_{id}"), doc: ProfileDoc::default(), merged_from: vec![] }
    }

    #[tokio::test]
    async fn a_snapshot_is_written_once_per_run_and_partition_count() {
        let (blobs, profiles) = (MemBlobs::new(), MemProfiles::new());
        for id in ["p_1", "p_2", "p_3"] {
            profiles.put(profile(id));
        }
        assert_eq!(ensure_snapshot(&blobs, &profiles, "lake", "r1", 2).await.unwrap(), 3);
        let written = blobs.keys("lake");
        assert_eq!(written.len(), 3, "two partitions and the marker: {written:?}");
        // The same run again: the marker answers, the table is not read.
        profiles.put(profile("p_4"));
        profiles.faults.fail("profiles.scan", 1);
        assert_eq!(ensure_snapshot(&blobs, &profiles, "lake", "r1", 2).await.unwrap(), 3);
        assert_eq!(profiles.faults.injected(), 0);
        // Another partition count re-snapshots.
        profiles.faults.clear();
        assert_eq!(ensure_snapshot(&blobs, &profiles, "lake", "r1", 1).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn an_undecodable_marker_is_an_error() {
        let (blobs, profiles) = (MemBlobs::new(), MemProfiles::new());
        blobs
            .put("lake", &marker_key("r1"), Bytes::from_static(br#"{"run_id": "r1", "partitions": 1}"#), "application/json")
            .await
            .unwrap();
        let e = ensure_snapshot(&blobs, &profiles, "lake", "r1", 1).await.unwrap_err();
        assert!(matches!(&e, RunError::Decode { key, .. } if key == "segments/_runs/r1/profiles.json"), "{e}");
        assert!(e.to_string().contains("profiles"), "{e}");
    }
}
