//! A bounded sample of (user, resource) pairs worth asking about, for
//! `warden diff --database-url`: the pairs the stored roles and grants
//! connect (members on their scopes and on the assets under them, owners on
//! their assets, grantees on their assets) and some unconnected pairs
//! (outsiders, public links). Each query is bounded by `LIMIT`; no table is
//! read whole.

use super::{text, Store, StoreError};
use std::collections::BTreeSet;

/// A user and a resource (`Workspace`, `Project` or `Asset`, and its id).
pub type Pair = (String, &'static str, String);

const QUERIES: [(&str, &str); 7] = [
    (
        "Workspace",
        "SELECT user_id AS u, workspace_id AS r FROM workspace_members LIMIT $1",
    ),
    (
        "Project",
        "SELECT user_id AS u, project_id AS r FROM project_members LIMIT $1",
    ),
    (
        "Asset",
        "SELECT user_id AS u, asset_id AS r FROM asset_grants LIMIT $1",
    ),
    (
        "Asset",
        "SELECT m.user_id AS u, a.id AS r FROM workspace_members m \
         JOIN projects p ON p.workspace_id = m.workspace_id \
         JOIN assets a ON a.project_id = p.id LIMIT $1",
    ),
    (
        "Asset",
        "SELECT m.user_id AS u, a.id AS r FROM project_members m \
         JOIN assets a ON a.project_id = m.project_id LIMIT $1",
    ),
    (
        "Asset",
        "SELECT w.owner_id AS u, a.id AS r FROM workspaces w \
         JOIN projects p ON p.workspace_id = w.id \
         JOIN assets a ON a.project_id = p.id LIMIT $1",
    ),
    (
        "Asset",
        "SELECT u.id AS u, a.id AS r FROM (SELECT id FROM users LIMIT $1) u \
         CROSS JOIN (SELECT id FROM assets WHERE visibility = 'public' LIMIT $1) a",
    ),
];

impl Store {
    /// At most about `limit` distinct pairs, drawn evenly from the queries above.
    pub async fn sample_pairs(&self, limit: usize) -> Result<Vec<Pair>, StoreError> {
        let per_query = (limit / QUERIES.len()).max(1);
        let mut pairs: BTreeSet<Pair> = BTreeSet::new();
        let mut conn = self.pool().acquire().await?;
        for (index, (ty, sql)) in QUERIES.iter().enumerate() {
            // The cross join is bounded by the square root of its share.
            let bound = if index == QUERIES.len() - 1 {
                (per_query as f64).sqrt().ceil() as i64
            } else {
                i64::try_from(per_query).unwrap_or(i64::MAX)
            };
            for row in sqlx::query(sql).bind(bound).fetch_all(&mut *conn).await? {
                pairs.insert((text(&row, "u")?, ty, text(&row, "r")?));
            }
        }
        Ok(pairs.into_iter().collect())
    }
}
