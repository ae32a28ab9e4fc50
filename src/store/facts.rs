//! Entity slices: the facts one decision (or one batch of decisions) can
//! need, in one database round trip.
//!
//! Given the principals and resources of the requests, one statement returns
//! the users, each resource with its ancestors (asset -> project ->
//! workspace), and only those memberships and grants of the principals that
//! touch those ancestors. Every lookup is by primary key or a leading index
//! column, so the cost does not grow with the tables.

use super::{id, opt_text, parse, required, text, values_list, Store, StoreError};
use crate::domain::{
    AssetRecord, GrantRecord, MembershipRecord, ProjectRecord, Scope, UserRecord, WorkspaceRecord,
    World,
};
use std::collections::BTreeSet;

/// The ids a batch of decisions asks about, by entity type.
#[derive(Clone, Debug, Default)]
pub struct FactKeys {
    /// User ids.
    pub users: BTreeSet<String>,
    /// Workspace ids.
    pub workspaces: BTreeSet<String>,
    /// Project ids.
    pub projects: BTreeSet<String>,
    /// Asset ids.
    pub assets: BTreeSet<String>,
}

impl FactKeys {
    /// Number of ids in all.
    pub fn len(&self) -> usize {
        self.users.len() + self.workspaces.len() + self.projects.len() + self.assets.len()
    }

    /// True when there is nothing to load.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most ids one load may bind (SQLite allows 32,766 parameters).
pub const MAX_KEYS: usize = 16_000;

/// Most parameters one statement may bind (SQLite's limit is 32,766).
const MAX_PARAMETERS: usize = 32_000;

/// Lists are padded with NULLs to a power of two so that the statement text,
/// and so the prepared statement, is shared by requests of similar size.
fn padded(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

fn sql(users: usize, workspaces: usize, projects: usize, assets: usize) -> String {
    let ku = values_list(1, users);
    let kw = values_list(1 + users, workspaces);
    let kp = values_list(1 + users + workspaces, projects);
    let ka = values_list(1 + users + workspaces + projects, assets);
    format!(
        "WITH ku(id) AS (VALUES {ku}), kw(id) AS (VALUES {kw}), \
              kp(id) AS (VALUES {kp}), ka(id) AS (VALUES {ka}), \
         ra AS (SELECT id, project_id, visibility, public_access FROM assets \
                WHERE id IN (SELECT id FROM ka)), \
         rp AS (SELECT id, workspace_id, visibility FROM projects \
                WHERE id IN (SELECT id FROM kp UNION SELECT project_id FROM ra)), \
         rw AS (SELECT id, owner_id, visibility FROM workspaces \
                WHERE id IN (SELECT id FROM kw UNION SELECT workspace_id FROM rp)) \
         SELECT 'u' AS k, id AS a, kind AS b, merged_into AS c, NULL AS d FROM users \
                WHERE id IN (SELECT id FROM ku) \
         UNION ALL SELECT 'w', id, owner_id, visibility, NULL FROM rw \
         UNION ALL SELECT 'p', id, workspace_id, visibility, NULL FROM rp \
         UNION ALL SELECT 'a', id, project_id, visibility, public_access FROM ra \
         UNION ALL SELECT 'wm', user_id, workspace_id, role, NULL FROM workspace_members \
                WHERE user_id IN (SELECT id FROM ku) AND workspace_id IN (SELECT id FROM rw) \
         UNION ALL SELECT 'pm', user_id, project_id, role, NULL FROM project_members \
                WHERE user_id IN (SELECT id FROM ku) AND project_id IN (SELECT id FROM rp) \
         UNION ALL SELECT 'g', user_id, asset_id, permission, NULL FROM asset_grants \
                WHERE user_id IN (SELECT id FROM ku) AND asset_id IN (SELECT id FROM ra)"
    )
}

impl Store {
    /// Loads the facts for `keys` in one round trip: the users, the
    /// resources with their ancestors, and the users' memberships and grants
    /// on those resources and ancestors.
    pub async fn load_facts(&self, keys: &FactKeys) -> Result<World, StoreError> {
        let lists = [&keys.users, &keys.workspaces, &keys.projects, &keys.assets];
        let mut sizes = lists.map(|l| padded(l.len()));
        if sizes.iter().sum::<usize>() > MAX_PARAMETERS {
            // Padding must never push a large batch past the parameter limit.
            sizes = lists.map(|l| l.len().max(1));
        }
        let statement = sql(sizes[0], sizes[1], sizes[2], sizes[3]);
        let mut query = sqlx::query(&statement);
        for (list, size) in lists.iter().zip(sizes) {
            for value in list.iter() {
                query = query.bind(value.as_str());
            }
            for _ in list.len()..size {
                query = query.bind(None::<String>);
            }
        }
        self.count_fact_load();
        let rows = query.fetch_all(self.pool()).await?;
        let mut world = World::default();
        for row in &rows {
            let kind = text(row, "k")?;
            let a = id(text(row, "a")?)?;
            let b = required(opt_text(row, "b")?, "column")?;
            let c = opt_text(row, "c")?;
            let d = opt_text(row, "d")?;
            match kind.as_str() {
                "u" => world.users.push(UserRecord {
                    id: a,
                    kind: parse(&b, "user kind")?,
                    email: None,
                    name: None,
                    merged_into: c.map(id).transpose()?,
                }),
                "w" => world.workspaces.push(WorkspaceRecord {
                    id: a,
                    owner: id(b)?,
                    visibility: parse(&required(c, "visibility")?, "visibility")?,
                }),
                "p" => world.projects.push(ProjectRecord {
                    id: a,
                    workspace: id(b)?,
                    visibility: parse(&required(c, "visibility")?, "visibility")?,
                }),
                "a" => world.assets.push(AssetRecord {
                    id: a,
                    project: id(b)?,
                    visibility: parse(&required(c, "visibility")?, "visibility")?,
                    public_access: parse(&required(d, "public access")?, "public access")?,
                }),
                "wm" | "pm" => world.memberships.push(MembershipRecord {
                    user: a,
                    scope: if kind == "wm" {
                        Scope::Workspace
                    } else {
                        Scope::Project
                    },
                    id: id(b)?,
                    role: parse(&required(c, "role")?, "role")?,
                }),
                "g" => world.grants.push(GrantRecord {
                    user: a,
                    asset: id(b)?,
                    permission: parse(&required(c, "permission")?, "permission")?,
                }),
                other => return Err(StoreError::Query(format!("unexpected fact kind {other}"))),
            }
        }
        Ok(world)
    }
}
