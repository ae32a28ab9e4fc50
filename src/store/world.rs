//! Bulk import and export of the world document (CONTRACT §5): one
//! transaction, all or nothing, upserts (so importing twice changes
//! nothing), and every reference checked against the document and the store.

use super::{id, now_millis, parse, required, text, values_list, Store, StoreError};
use crate::audit::{Actor, AuditEvent};
use crate::domain::{
    AssetRecord, GrantRecord, MembershipRecord, ProjectRecord, Scope, UserRecord, WorkspaceRecord,
    World,
};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use std::collections::{BTreeSet, HashSet};

/// Imports of at least this many rows refresh the planner statistics.
const ANALYZE_AFTER_ROWS: usize = 1_000;

/// Rows per INSERT statement (well under either backend's parameter limit).
const CHUNK: usize = 500;

/// Why an import was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The document contradicts itself or the store; every problem is listed.
    #[error("the import document is invalid ({} problem(s)): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Problems a document has on its own: duplicates and impossible roles.
fn check_document(world: &World) -> Vec<String> {
    let mut problems = Vec::new();
    fn dups<'a>(
        problems: &mut Vec<String>,
        section: &str,
        keys: impl Iterator<Item = String> + 'a,
    ) {
        let mut seen = HashSet::new();
        for (i, key) in keys.enumerate() {
            if !seen.insert(key.clone()) {
                problems.push(format!("{section}[{i}]: {key} appears more than once"));
            }
        }
    }
    dups(
        &mut problems,
        "users",
        world
            .users
            .iter()
            .map(|u| format!("id {:?}", u.id.as_str())),
    );
    dups(
        &mut problems,
        "workspaces",
        world
            .workspaces
            .iter()
            .map(|w| format!("id {:?}", w.id.as_str())),
    );
    dups(
        &mut problems,
        "projects",
        world
            .projects
            .iter()
            .map(|p| format!("id {:?}", p.id.as_str())),
    );
    dups(
        &mut problems,
        "assets",
        world
            .assets
            .iter()
            .map(|a| format!("id {:?}", a.id.as_str())),
    );
    dups(
        &mut problems,
        "memberships",
        world.memberships.iter().map(|m| {
            format!(
                "user {:?} in {} {:?}",
                m.user.as_str(),
                m.scope,
                m.id.as_str()
            )
        }),
    );
    dups(
        &mut problems,
        "grants",
        world.grants.iter().map(|g| {
            format!(
                "grant of asset {:?} to user {:?}",
                g.asset.as_str(),
                g.user.as_str()
            )
        }),
    );
    for (i, m) in world.memberships.iter().enumerate() {
        if let Some(problem) = m.problem() {
            problems.push(format!("memberships[{i}].role: {problem}"));
        }
    }
    problems
}

/// One reference from the document: where it is, what it names.
struct Reference<'a> {
    path: String,
    table: &'static str,
    what: &'static str,
    id: &'a str,
}

fn references(world: &World) -> Vec<Reference<'_>> {
    let mut refs = Vec::new();
    for (i, u) in world.users.iter().enumerate() {
        if let Some(target) = &u.merged_into {
            refs.push(Reference {
                path: format!("users[{i}].merged_into"),
                table: "users",
                what: "user",
                id: target.as_str(),
            });
        }
    }
    for (i, w) in world.workspaces.iter().enumerate() {
        refs.push(Reference {
            path: format!("workspaces[{i}].owner"),
            table: "users",
            what: "user",
            id: w.owner.as_str(),
        });
    }
    for (i, p) in world.projects.iter().enumerate() {
        refs.push(Reference {
            path: format!("projects[{i}].workspace"),
            table: "workspaces",
            what: "workspace",
            id: p.workspace.as_str(),
        });
    }
    for (i, a) in world.assets.iter().enumerate() {
        refs.push(Reference {
            path: format!("assets[{i}].project"),
            table: "projects",
            what: "project",
            id: a.project.as_str(),
        });
    }
    for (i, m) in world.memberships.iter().enumerate() {
        refs.push(Reference {
            path: format!("memberships[{i}].user"),
            table: "users",
            what: "user",
            id: m.user.as_str(),
        });
        let (table, what) = match m.scope {
            Scope::Workspace => ("workspaces", "workspace"),
            Scope::Project => ("projects", "project"),
        };
        refs.push(Reference {
            path: format!("memberships[{i}].id"),
            table,
            what,
            id: m.id.as_str(),
        });
    }
    for (i, g) in world.grants.iter().enumerate() {
        refs.push(Reference {
            path: format!("grants[{i}].user"),
            table: "users",
            what: "user",
            id: g.user.as_str(),
        });
        refs.push(Reference {
            path: format!("grants[{i}].asset"),
            table: "assets",
            what: "asset",
            id: g.asset.as_str(),
        });
    }
    refs
}

/// Which of `ids` exist in `table`.
async fn existing(
    conn: &mut AnyConnection,
    table: &'static str,
    ids: &BTreeSet<&str>,
) -> Result<HashSet<String>, StoreError> {
    let mut found = HashSet::new();
    let ids: Vec<&str> = ids.iter().copied().collect();
    for chunk in ids.chunks(CHUNK) {
        let statement = format!(
            "SELECT id FROM {table} WHERE id IN (VALUES {})",
            values_list(1, chunk.len())
        );
        let mut query = sqlx::query(&statement);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.insert(text(&row, "id")?);
        }
    }
    Ok(found)
}

/// References that name nothing in the document nor in the store.
async fn dangling(conn: &mut AnyConnection, world: &World) -> Result<Vec<String>, StoreError> {
    let in_doc = |table: &str| -> HashSet<&str> {
        match table {
            "users" => world.users.iter().map(|u| u.id.as_str()).collect(),
            "workspaces" => world.workspaces.iter().map(|w| w.id.as_str()).collect(),
            "projects" => world.projects.iter().map(|p| p.id.as_str()).collect(),
            _ => world.assets.iter().map(|a| a.id.as_str()).collect(),
        }
    };
    let refs = references(world);
    let mut problems = Vec::new();
    for table in ["users", "workspaces", "projects", "assets"] {
        let doc = in_doc(table);
        let wanted: BTreeSet<&str> = refs
            .iter()
            .filter(|r| r.table == table && !doc.contains(r.id))
            .map(|r| r.id)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let stored = existing(conn, table, &wanted).await?;
        for r in refs.iter().filter(|r| r.table == table) {
            if !doc.contains(r.id) && !stored.contains(r.id) {
                problems.push(format!(
                    "{}: {} {:?} is neither in the document nor stored",
                    r.path, r.what, r.id
                ));
            }
        }
    }
    Ok(problems)
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// Inserts `rows` in chunks; `head` is `INSERT INTO t (cols)`, `tail` the
/// `ON CONFLICT` clause, `bind` binds one row's `width` values.
async fn upsert<'r, T>(
    conn: &mut AnyConnection,
    head: &str,
    width: usize,
    tail: &str,
    rows: &'r [T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &'r T, i64) -> AnyQuery<'q>,
) -> Result<(), StoreError> {
    let now = now_millis();
    for chunk in rows.chunks(CHUNK) {
        let mut values = String::new();
        for i in 0..chunk.len() {
            if i > 0 {
                values.push_str(", ");
            }
            let params: Vec<String> = (1..=width).map(|j| format!("${}", i * width + j)).collect();
            values.push('(');
            values.push_str(&params.join(", "));
            values.push(')');
        }
        let statement = format!("{head} VALUES {values} {tail}");
        let mut query = sqlx::query(&statement);
        for row in chunk {
            query = bind(query, row, now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn bind_member<'q>(q: AnyQuery<'q>, m: &&MembershipRecord, now: i64) -> AnyQuery<'q> {
    q.bind(m.user.as_str().to_owned())
        .bind(m.id.as_str().to_owned())
        .bind(m.role.as_str())
        .bind(now)
}

async fn write_all(conn: &mut AnyConnection, world: &World) -> Result<(), StoreError> {
    upsert(
        conn,
        "INSERT INTO users (id, kind, email, name, created_at, updated_at)",
        6,
        "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, \
         email = COALESCE(excluded.email, users.email), name = COALESCE(excluded.name, users.name), \
         updated_at = excluded.updated_at",
        &world.users,
        |q, u: &UserRecord, now| {
            q.bind(u.id.as_str().to_owned())
                .bind(u.kind.as_str())
                .bind(u.email.clone())
                .bind(u.name.clone())
                .bind(now)
                .bind(now)
        },
    )
    .await?;
    // After every user exists, so the reference never points ahead.
    for u in &world.users {
        if let Some(target) = &u.merged_into {
            sqlx::query("UPDATE users SET merged_into = $1 WHERE id = $2")
                .bind(target.as_str())
                .bind(u.id.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    upsert(
        conn,
        "INSERT INTO workspaces (id, owner_id, visibility, created_at, updated_at)",
        5,
        "ON CONFLICT (id) DO UPDATE SET owner_id = excluded.owner_id, \
         visibility = excluded.visibility, updated_at = excluded.updated_at",
        &world.workspaces,
        |q, w: &WorkspaceRecord, now| {
            q.bind(w.id.as_str().to_owned())
                .bind(w.owner.as_str().to_owned())
                .bind(w.visibility.as_str())
                .bind(now)
                .bind(now)
        },
    )
    .await?;
    upsert(
        conn,
        "INSERT INTO projects (id, workspace_id, visibility, created_at, updated_at)",
        5,
        "ON CONFLICT (id) DO UPDATE SET workspace_id = excluded.workspace_id, \
         visibility = excluded.visibility, updated_at = excluded.updated_at",
        &world.projects,
        |q, p: &ProjectRecord, now| {
            q.bind(p.id.as_str().to_owned())
                .bind(p.workspace.as_str().to_owned())
                .bind(p.visibility.as_str())
                .bind(now)
                .bind(now)
        },
    )
    .await?;
    upsert(
        conn,
        "INSERT INTO assets (id, project_id, visibility, public_access, created_at, updated_at)",
        6,
        "ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, \
         visibility = excluded.visibility, public_access = excluded.public_access, \
         updated_at = excluded.updated_at",
        &world.assets,
        |q, a: &AssetRecord, now| {
            q.bind(a.id.as_str().to_owned())
                .bind(a.project.as_str().to_owned())
                .bind(a.visibility.as_str())
                .bind(a.public_access.as_str())
                .bind(now)
                .bind(now)
        },
    )
    .await?;
    let (ws_members, project_members): (Vec<&MembershipRecord>, Vec<&MembershipRecord>) = world
        .memberships
        .iter()
        .partition(|m| m.scope == Scope::Workspace);
    upsert(
        conn,
        "INSERT INTO workspace_members (user_id, workspace_id, role, created_at)",
        4,
        "ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role",
        &ws_members,
        bind_member,
    )
    .await?;
    upsert(
        conn,
        "INSERT INTO project_members (user_id, project_id, role, created_at)",
        4,
        "ON CONFLICT (user_id, project_id) DO UPDATE SET role = excluded.role",
        &project_members,
        bind_member,
    )
    .await?;
    upsert(
        conn,
        "INSERT INTO asset_grants (user_id, asset_id, permission, created_at)",
        4,
        "ON CONFLICT (user_id, asset_id) DO UPDATE SET permission = excluded.permission",
        &world.grants,
        |q, g: &GrantRecord, now| {
            q.bind(g.user.as_str().to_owned())
                .bind(g.asset.as_str().to_owned())
                .bind(g.permission.as_str())
                .bind(now)
        },
    )
    .await?;
    Ok(())
}

impl Store {
    /// Applies `world` in one transaction, or nothing at all. Returns the
    /// counts written.
    pub async fn import(
        &self,
        world: &World,
        actor: Actor,
        request_id: Option<String>,
    ) -> Result<serde_json::Value, ImportError> {
        let problems = check_document(world);
        if !problems.is_empty() {
            return Err(ImportError::Invalid(problems));
        }
        let mut tx = self.begin().await?;
        let problems = dangling(tx.conn(), world).await?;
        if !problems.is_empty() {
            return Err(ImportError::Invalid(problems));
        }
        write_all(tx.conn(), world).await?;
        let counts = world.counts();
        tx.commit(AuditEvent {
            actor,
            action: "world.import",
            target_type: "world",
            target_id: "import".into(),
            before: None,
            after: Some(counts.clone()),
            request_id,
        })
        .await?;
        if world.records() >= ANALYZE_AFTER_ROWS {
            // Outside the transaction: the import is committed either way.
            if let Err(e) = self.analyze().await {
                tracing::warn!(error = %e, "statistics refresh after import failed");
            }
        }
        Ok(counts)
    }

    /// The whole store as one import document.
    pub async fn export(&self) -> Result<World, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let mut world = World::default();
        for row in sqlx::query("SELECT id, kind, email, name, merged_into FROM users ORDER BY id")
            .fetch_all(&mut *conn)
            .await?
        {
            world.users.push(UserRecord {
                id: id(text(&row, "id")?)?,
                kind: parse(&text(&row, "kind")?, "user kind")?,
                email: super::opt_text(&row, "email")?,
                name: super::opt_text(&row, "name")?,
                merged_into: super::opt_text(&row, "merged_into")?.map(id).transpose()?,
            });
        }
        for row in sqlx::query("SELECT id, owner_id, visibility FROM workspaces ORDER BY id")
            .fetch_all(&mut *conn)
            .await?
        {
            world.workspaces.push(WorkspaceRecord {
                id: id(text(&row, "id")?)?,
                owner: id(text(&row, "owner_id")?)?,
                visibility: parse(&text(&row, "visibility")?, "visibility")?,
            });
        }
        for row in sqlx::query("SELECT id, workspace_id, visibility FROM projects ORDER BY id")
            .fetch_all(&mut *conn)
            .await?
        {
            world.projects.push(ProjectRecord {
                id: id(text(&row, "id")?)?,
                workspace: id(text(&row, "workspace_id")?)?,
                visibility: parse(&text(&row, "visibility")?, "visibility")?,
            });
        }
        for row in
            sqlx::query("SELECT id, project_id, visibility, public_access FROM assets ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
        {
            world.assets.push(AssetRecord {
                id: id(text(&row, "id")?)?,
                project: id(text(&row, "project_id")?)?,
                visibility: parse(&text(&row, "visibility")?, "visibility")?,
                public_access: parse(&text(&row, "public_access")?, "public access")?,
            });
        }
        let memberships = "SELECT 'workspace' AS scope, user_id, workspace_id AS scope_id, role FROM workspace_members \
             UNION ALL SELECT 'project', user_id, project_id, role FROM project_members \
             ORDER BY scope DESC, scope_id, user_id";
        for row in sqlx::query(memberships).fetch_all(&mut *conn).await? {
            world.memberships.push(MembershipRecord {
                user: id(text(&row, "user_id")?)?,
                scope: parse(&text(&row, "scope")?, "scope")?,
                id: id(text(&row, "scope_id")?)?,
                role: parse(&required(super::opt_text(&row, "role")?, "role")?, "role")?,
            });
        }
        for row in sqlx::query(
            "SELECT user_id, asset_id, permission FROM asset_grants ORDER BY asset_id, user_id",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            world.grants.push(GrantRecord {
                user: id(text(&row, "user_id")?)?,
                asset: id(text(&row, "asset_id")?)?,
                permission: parse(&text(&row, "permission")?, "permission")?,
            });
        }
        Ok(world)
    }
}
