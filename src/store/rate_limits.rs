//! Rate limits shared by every replica: fixed-window counters in the
//! database, one upsert per request (`INSERT .. ON CONFLICT DO UPDATE ..
//! RETURNING`), so two Warden processes on one database count together.
//!
//! Counters are operational bookkeeping, not facts anyone decides on, so
//! they are not audited.

use super::{now_millis, Store, StoreError};
use sqlx::Row;
use std::time::Duration;

/// The outcome of one counted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Under the limit.
    Allowed,
    /// Over it; retry after this many seconds.
    Limited {
        /// Seconds until the window ends.
        retry_after: u64,
    },
}

impl Store {
    /// Counts one request in `bucket` (e.g. `anonymous:127.0.0.1`) and says
    /// whether it is within `limit` requests per `window`.
    ///
    /// The first statement of the anonymous mint and refresh, so it is sent
    /// again when its connection turns out lost
    /// ([`Store::read_again_if_lost`]), though it writes: the one write that
    /// may safely land twice, since at worst the client is counted once
    /// more in this window.
    pub async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(60_000).max(1);
        let now = now_millis();
        let start = now - now.rem_euclid(window_ms);
        let row = self
            .read_again_if_lost(|| async {
                let row = sqlx::query(
                    "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
                     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
                     RETURNING hits",
                )
                .bind(bucket)
                .bind(start)
                .fetch_one(self.pool())
                .await?;
                Ok(row)
            })
            .await?;
        let hits: i64 = row
            .try_get("hits")
            .map_err(|e| StoreError::Query(format!("column hits: {e}")))?;
        if hits <= i64::from(limit) {
            Ok(RateDecision::Allowed)
        } else {
            let left_ms = (start + window_ms - now).max(1);
            Ok(RateDecision::Limited {
                retry_after: u64::try_from((left_ms + 999) / 1000).unwrap_or(1),
            })
        }
    }

    /// Deletes counters of windows that ended before `older_than` ago.
    pub async fn prune_rate_limits(&self, older_than: Duration) -> Result<u64, StoreError> {
        let cutoff = now_millis() - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX / 2);
        let done = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
            .bind(cutoff)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
