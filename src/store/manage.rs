//! The management API's reads and writes (CONTRACT §5): workspaces,
//! projects, assets, members, grants, invites, audit trails.
//!
//! Who may do what is decided before any of this runs (`http::manage` asks
//! the policies), and asked again inside the write's transaction
//! ([`Recheck`]): a role removed between the two refuses the write. This
//! module keeps the facts consistent. Every write is one transaction
//! committed with exactly one audit event ([`super::Tx::commit`]), so a
//! refused or failed change writes nothing. Writes that attach one thing to
//! another re-read, inside the transaction, the workspace the authorization
//! saw, and refuse with a conflict if it moved meanwhile.

use super::facts::FactKeys;
use super::{
    i64_of, id, now_millis, opt_i64, opt_text, parse, revision, text, Backend, Store, StoreError,
    Tx,
};
use crate::audit::{Actor, AuditEvent};
use crate::domain::{
    AssetRecord, GrantRecord, Id, MembershipRecord, Permission, ProjectRecord, Role, Scope,
    UserKind, WorkspaceRecord, World,
};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::Arc;

/// Why a management write did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// A record the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with stored data (id taken, moved meanwhile,
    /// the workspace's owner...).
    #[error("{0}")]
    Conflict(String),
    /// The invite expired, was revoked or was used.
    #[error("{0}")]
    Gone(String),
    /// Asked again inside the write's transaction, the policies no longer
    /// allow the change: the facts changed since it was authorized.
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ManageError {
    fn from(e: sqlx::Error) -> Self {
        ManageError::Store(e.into())
    }
}

/// The workspace a `Workspace` (itself), `Project` or `Asset` lives in, as
/// column `w`.
fn workspace_of_sql(ty: &str) -> &'static str {
    match ty {
        "Workspace" => "SELECT id AS w FROM workspaces WHERE id = $1",
        "Project" => "SELECT workspace_id AS w FROM projects WHERE id = $1",
        _ => {
            "SELECT p.workspace_id AS w FROM assets a JOIN projects p ON p.id = a.project_id \
             WHERE a.id = $1"
        }
    }
}

/// Where the resource of a subject search lives ("" where not applicable).
#[derive(Clone, Debug)]
pub struct SubjectScope {
    /// Its workspace (a workspace's own id).
    pub workspace: String,
    /// Its project, for a project or an asset.
    pub project: String,
    /// The asset itself.
    pub asset: String,
}

/// The decisions that authorized a change, asked again inside its
/// transaction. The first answer was given on facts read before the
/// transaction; a role removed meanwhile must still stop the write.
pub trait Recheck: Send + Sync + std::fmt::Debug {
    /// The ids whose facts the decisions need.
    fn keys(&self) -> FactKeys;
    /// An error when, over `world`, a decision no longer allows the change:
    /// [`ManageError::Refused`], or [`ManageError::NotFound`] when its
    /// resource was deleted meanwhile.
    fn recheck(&self, world: &World) -> Result<(), ManageError>;
}

/// Who asks and the request id, for audit events, and what authorized it.
#[derive(Clone, Debug)]
pub struct Change {
    /// The acting user.
    pub actor: Actor,
    /// The HTTP request.
    pub request_id: Option<String>,
    /// The decisions that allowed the change, asked again once the write's
    /// transaction holds the write lock; `None` for changes no policy
    /// decides (none today come through here).
    pub authorized: Option<Arc<dyn Recheck>>,
}

impl Change {
    fn event(
        &self,
        action: &'static str,
        target_type: &'static str,
        target_id: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> AuditEvent {
        AuditEvent {
            actor: self.actor.clone(),
            action,
            target_type,
            target_id: target_id.to_string(),
            before,
            after,
            request_id: self.request_id.clone(),
        }
    }
}

/// A user as the management API needs it.
#[derive(Clone, Debug)]
pub struct UserInfo {
    /// Anonymous or registered.
    pub kind: UserKind,
    /// Email on record.
    pub email: Option<String>,
}

/// An invite as listed (never its token).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InviteInfo {
    /// Invite id.
    pub id: String,
    /// `workspace` or `project`.
    pub scope: Scope,
    /// The workspace's or project's id.
    pub scope_id: String,
    /// The email it is bound to (lower-cased).
    pub email: String,
    /// The role it grants.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// `pending`, `accepted`, `revoked` or `expired`.
    #[schema(value_type = String)]
    pub status: &'static str,
}

/// A new invite, its token already hashed.
pub struct NewInvite {
    /// Invite id.
    pub id: String,
    /// SHA-256 of the token.
    pub token_hash: String,
    /// Scope.
    pub scope: Scope,
    /// Scope id.
    pub scope_id: Id,
    /// Bound email, lower-cased.
    pub email: String,
    /// Role granted.
    pub role: Role,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// An invite found by its token, for acceptance.
#[derive(Clone, Debug)]
pub struct PendingInvite {
    /// Invite id.
    pub id: String,
    /// Scope.
    pub scope: Scope,
    /// Scope id.
    pub scope_id: String,
    /// Bound email.
    pub email: String,
    /// Role granted.
    pub role: Role,
}

fn scope_table(scope: Scope) -> (&'static str, &'static str) {
    match scope {
        Scope::Workspace => ("workspace_members", "workspace_id"),
        Scope::Project => ("project_members", "project_id"),
    }
}

fn invite_status(row: &sqlx::any::AnyRow, now: i64) -> Result<&'static str, StoreError> {
    let get = |c: &str| {
        row.try_get::<Option<i64>, _>(c)
            .map_err(|e| StoreError::Query(format!("column {c}: {e}")))
    };
    Ok(if get("accepted_at")?.is_some() {
        "accepted"
    } else if get("revoked_at")?.is_some() {
        "revoked"
    } else if get("expires_at")?.unwrap_or(0) <= now {
        "expired"
    } else {
        "pending"
    })
}

/// One round of search candidates ([`Store::asset_candidates`],
/// [`Store::project_candidates`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CandidateRound {
    /// Candidate ids after the cursor, in id order.
    pub ids: Vec<String>,
    /// Set when the round read the ids only up to this one: fewer ids than
    /// asked for may come back although more lie past it, and the next
    /// round starts after it. `None`: fewer ids than asked for means there
    /// are no more.
    pub through: Option<String>,
}

impl CandidateRound {
    /// `ids` read with nothing past the last left unread.
    pub fn complete(ids: Vec<String>) -> Self {
        CandidateRound { ids, through: None }
    }
}

/// Assets an unscoped scan reads in one round: at least 1,024, sixteen
/// times the page size rounded up to a power of two, at most 16,384 (a
/// few statement texts, each prepared once per connection).
fn scan_rows(limit: i64) -> u64 {
    (u64::try_from(limit).unwrap_or(1).max(1).next_power_of_two() * 16).clamp(1024, 16_384)
}

/// The unscoped candidates of user `$1` in `table` (`assets` or
/// `projects`, both with a `workspace_id`) after `$2`, at most `$3`, on
/// Postgres: those of the workspaces the user owns or is a member of,
/// read one of two ways chosen by the statement itself, and those of
/// `other_arms` (`UNION SELECT ...` of the user's other relations).
///
/// - **Per relation** (most users): every workspace the user owns or is a
///   member of gives at most one page of its rows after the cursor (a
///   LATERAL subquery on the index (workspace_id, id)), so a round reads
///   about `$3` rows per workspace, however many each holds.
/// - **In id order** (users of many workspaces, for whom that is many
///   pages a round: 57 ms a page of assets for a viewer of the 1,001
///   workspaces of the 100k bench world): the rows after the cursor are
///   read in id order, [`scan_rows`] of them, and those of the user's
///   workspaces kept. Then the candidates are complete only up to the last
///   row read, which comes back as a row with `through` set, and the other
///   arms are cut there too.
///
/// The second is chosen when it reads fewer rows: with `W` the user's
/// workspaces of `T`, holding `N` rows in all, per relation reads about
/// `W * min($3, N/T)` and in id order `$3 * T / W` rows, each with a heap
/// fetch (counted three times). `T` and `N` are the planner's estimates
/// (`pg_class.reltuples`, kept by ANALYZE). The choice gates each arm with
/// a one-time filter, so the arm not chosen never runs.
fn unscoped_sql(table: &str, other_arms: &str, limit: i64) -> String {
    let scan = scan_rows(limit);
    format!(
        "WITH gate AS MATERIALIZED (\
           SELECT (SELECT count(*) FROM (SELECT 1 FROM workspace_members WHERE user_id = $1 LIMIT 100000) m) \
                + (SELECT count(*) FROM (SELECT 1 FROM workspaces WHERE owner_id = $1 LIMIT 100000) o) AS mine, \
                  (SELECT GREATEST(reltuples, 1) FROM pg_class WHERE oid = 'workspaces'::regclass) AS total, \
                  (SELECT GREATEST(reltuples, 1) FROM pg_class WHERE oid = '{table}'::regclass) AS n), \
         plan AS MATERIALIZED (\
           SELECT mine * mine * LEAST($3, n / total) > 3 * $3 * total AS scan FROM gate), \
         scanned AS MATERIALIZED (\
           SELECT id, workspace_id FROM {table} WHERE id > $2 AND (SELECT scan FROM plan) \
           ORDER BY id LIMIT {scan}), \
         through AS (SELECT max(id) AS x FROM scanned HAVING count(*) >= {scan}), \
         found AS (\
           SELECT s.id FROM scanned s WHERE s.workspace_id IN (\
             SELECT id FROM workspaces WHERE owner_id = $1 \
             UNION ALL SELECT workspace_id FROM workspace_members WHERE user_id = $1) \
           UNION SELECT r.id FROM workspaces w CROSS JOIN LATERAL (SELECT id FROM {table} \
             WHERE workspace_id = w.id AND id > $2 ORDER BY id LIMIT $3) r \
             WHERE w.owner_id = $1 AND NOT (SELECT scan FROM plan) \
           UNION SELECT r.id FROM workspace_members m CROSS JOIN LATERAL (SELECT id FROM {table} \
             WHERE workspace_id = m.workspace_id AND id > $2 ORDER BY id LIMIT $3) r \
             WHERE m.user_id = $1 AND NOT (SELECT scan FROM plan) \
           {other_arms}) \
         (SELECT id, FALSE AS through FROM found \
          WHERE id <= COALESCE((SELECT x FROM through), id) ORDER BY id LIMIT $3) \
         UNION ALL SELECT x, TRUE FROM through"
    )
}

/// [`unscoped_sql`] on SQLite: the same two reads, chosen the same way
/// but for the size of a workspace, which SQLite does not keep without
/// ANALYZE and would cost a count of the whole table on every page. Each
/// workspace is taken to hold at least a page, so the rows are read in id
/// order when `W * W > 3 * T`. SQLite has no LATERAL: read per relation,
/// each workspace (and each project of `other_arms`) gives its page
/// through a correlated `IN (... ORDER BY id LIMIT $3)`, which SQLite runs
/// once per workspace on the index (workspace_id, id). The choice sits in
/// the scan's `LIMIT` and in the list of workspaces read per relation,
/// where SQLite evaluates it once: as a condition on each row it would be
/// tested on every row of the index it walks.
fn unscoped_sqlite_sql(table: &str, other_arms: &str, limit: i64) -> String {
    let scan = scan_rows(limit);
    format!(
        "WITH mine(id) AS MATERIALIZED (\
           SELECT id FROM workspaces WHERE owner_id = $1 \
           UNION SELECT workspace_id FROM workspace_members WHERE user_id = $1), \
         plan AS MATERIALIZED (\
           SELECT (SELECT count(*) FROM mine) * (SELECT count(*) FROM mine) \
                  > 3 * (SELECT max(count(*), 1) FROM workspaces) AS scan), \
         scanned AS MATERIALIZED (\
           SELECT id, workspace_id FROM {table} WHERE id > $2 \
           ORDER BY id LIMIT (SELECT CASE WHEN scan THEN {scan} ELSE 0 END FROM plan)), \
         through AS (SELECT max(id) AS x FROM scanned HAVING count(*) >= {scan}), \
         found AS (\
           SELECT id FROM scanned WHERE workspace_id IN (SELECT id FROM mine) \
           UNION SELECT r.id FROM (SELECT id FROM mine WHERE NOT (SELECT scan FROM plan)) m \
             JOIN {table} r ON r.id IN (SELECT id FROM {table} \
               WHERE workspace_id = m.id AND id > $2 ORDER BY id LIMIT $3) \
           {other_arms}) \
         SELECT id, through FROM (SELECT id, 0 AS through FROM found \
           WHERE id <= COALESCE((SELECT x FROM through), id) ORDER BY id LIMIT $3) \
         UNION ALL SELECT x, 1 FROM through"
    )
}

impl Store {
    /// A user's kind and email, if the user exists.
    pub async fn user_info(&self, user: &str) -> Result<Option<UserInfo>, StoreError> {
        let row = sqlx::query("SELECT kind, email FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(UserInfo {
                kind: parse(&text(&row, "kind")?, "user kind")?,
                email: opt_text(&row, "email")?,
            })
        })
        .transpose()
    }

    /// One workspace.
    pub async fn workspace(&self, id: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        let row = sqlx::query("SELECT id, owner_id, visibility FROM workspaces WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(WorkspaceRecord {
                id: super::id(text(&row, "id")?)?,
                owner: super::id(text(&row, "owner_id")?)?,
                visibility: parse(&text(&row, "visibility")?, "visibility")?,
            })
        })
        .transpose()
    }

    /// One project.
    pub async fn project(&self, id: &str) -> Result<Option<ProjectRecord>, StoreError> {
        let row = sqlx::query("SELECT id, workspace_id, visibility FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(ProjectRecord {
                id: super::id(text(&row, "id")?)?,
                workspace: super::id(text(&row, "workspace_id")?)?,
                visibility: parse(&text(&row, "visibility")?, "visibility")?,
            })
        })
        .transpose()
    }

    /// One asset.
    pub async fn asset(&self, id: &str) -> Result<Option<AssetRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, project_id, visibility, public_access FROM assets WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(AssetRecord {
                id: super::id(text(&row, "id")?)?,
                project: super::id(text(&row, "project_id")?)?,
                visibility: parse(&text(&row, "visibility")?, "visibility")?,
                public_access: parse(&text(&row, "public_access")?, "public access")?,
            })
        })
        .transpose()
    }

    /// The workspace a resource lives in (a workspace's own id).
    pub async fn workspace_of(&self, scope: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(workspace_of_sql(scope))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| text(&row, "w")).transpose()
    }

    /// The members of a workspace or project, by user id.
    pub async fn members(
        &self,
        scope: Scope,
        scope_id: &str,
    ) -> Result<Vec<MembershipRecord>, StoreError> {
        let (table, column) = scope_table(scope);
        let rows = sqlx::query(&format!(
            "SELECT user_id, role FROM {table} WHERE {column} = $1 ORDER BY user_id"
        ))
        .bind(scope_id)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(MembershipRecord {
                user: id(text(&row, "user_id")?)?,
                scope,
                id: id(scope_id.to_string())?,
                role: parse(&text(&row, "role")?, "role")?,
            });
        }
        Ok(out)
    }

    /// The grants on an asset, by user id.
    pub async fn grants(&self, asset: &str) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, permission FROM asset_grants WHERE asset_id = $1 ORDER BY user_id",
        )
        .bind(asset)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(GrantRecord {
                user: id(text(&row, "user_id")?)?,
                asset: id(asset.to_string())?,
                permission: parse(&text(&row, "permission")?, "permission")?,
            });
        }
        Ok(out)
    }

    /// Ids of workspaces `user` has a relation to (owner, member, member of
    /// one of its projects), after `after`, in id order; the policies then
    /// decide which the user may read.
    pub async fn workspace_candidates(
        &self,
        user: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        // Each relation gives at most one page after the cursor: owned
        // workspaces from the index (owner_id, id), memberships from the
        // primary key (user_id, workspace_id). The workspaces of the user's
        // project memberships are read whole (bounded by those memberships)
        // and cut to a page.
        let sql = "SELECT id FROM (\
              SELECT id FROM (SELECT id FROM workspaces WHERE owner_id = $1 AND id > $2 \
                    ORDER BY id LIMIT $3) AS o \
              UNION SELECT id FROM (SELECT workspace_id AS id FROM workspace_members \
                    WHERE user_id = $1 AND workspace_id > $2 ORDER BY workspace_id LIMIT $3) AS m \
              UNION SELECT id FROM (SELECT DISTINCT p.workspace_id AS id FROM project_members m \
                    JOIN projects p ON p.id = m.project_id \
                    WHERE m.user_id = $1 AND p.workspace_id > $2 ORDER BY p.workspace_id LIMIT $3) AS pm\
            ) c ORDER BY id LIMIT $3";
        self.ids(sql, user, after, None, limit).await
    }

    /// Ids of projects (in `workspace` when not empty) `user` has a relation
    /// to, after `after`, in id order.
    pub async fn project_candidates(
        &self,
        user: &str,
        workspace: &str,
        after: &str,
        limit: i64,
    ) -> Result<CandidateRound, StoreError> {
        if !workspace.is_empty() {
            // Within one workspace: all of its projects after the cursor,
            // from the index (workspace_id, id), when the user owns it or
            // is a member (tested once); else the user's project
            // memberships in it.
            let sql = "SELECT id FROM (\
                  SELECT id FROM (SELECT id FROM projects WHERE workspace_id = $3 AND id > $2 \
                        AND (EXISTS (SELECT 1 FROM workspaces WHERE id = $3 AND owner_id = $1) \
                          OR EXISTS (SELECT 1 FROM workspace_members \
                                     WHERE workspace_id = $3 AND user_id = $1)) \
                        ORDER BY id LIMIT $4) AS w \
                  UNION SELECT id FROM (SELECT m.project_id AS id FROM project_members m \
                        JOIN projects p ON p.id = m.project_id \
                        WHERE m.user_id = $1 AND p.workspace_id = $3 AND m.project_id > $2 \
                        ORDER BY m.project_id LIMIT $4) AS m\
                ) c ORDER BY id LIMIT $4";
            let ids = self.ids(sql, user, after, Some(workspace), limit).await?;
            return Ok(CandidateRound::complete(ids));
        }
        // Each workspace the user owns or is a member of gives at most one
        // page of its projects after the cursor, or, for a user of many,
        // the projects are read in id order ([`unscoped_sql`],
        // [`unscoped_sqlite_sql`]), and the user's project memberships one
        // page from the primary key (user_id, project_id).
        match self.backend() {
            Backend::Postgres => {
                let sql = unscoped_sql(
                    "projects",
                    "UNION SELECT id FROM (SELECT project_id AS id FROM project_members \
                       WHERE user_id = $1 AND project_id > $2 ORDER BY project_id LIMIT $3) AS m",
                    limit,
                );
                self.candidate_round(&sql, user, after, limit).await
            }
            Backend::Sqlite => {
                let sql = unscoped_sqlite_sql(
                    "projects",
                    "UNION SELECT project_id FROM project_members \
                       WHERE user_id = $1 AND project_id > $2",
                    limit,
                );
                self.candidate_round(&sql, user, after, limit).await
            }
        }
    }

    /// Ids of assets (in `workspace` and/or `project` when not empty)
    /// `user` has a relation to (by role or grant; never by public link),
    /// after `after`, in id order, at most `limit`.
    pub async fn asset_candidates(
        &self,
        user: &str,
        workspace: &str,
        project: &str,
        after: &str,
        limit: i64,
    ) -> Result<CandidateRound, StoreError> {
        if !workspace.is_empty() || !project.is_empty() {
            let ids = self
                .scoped_asset_candidates(user, workspace, project, after, limit)
                .await?;
            return Ok(CandidateRound::complete(ids));
        }
        match self.backend() {
            Backend::Postgres => {
                let sql = unscoped_sql(
                    "assets",
                    "UNION SELECT a.id FROM project_members m CROSS JOIN LATERAL (SELECT id FROM assets \
                       WHERE project_id = m.project_id AND id > $2 ORDER BY id LIMIT $3) a \
                       WHERE m.user_id = $1 \
                     UNION SELECT g.asset_id FROM asset_grants g WHERE g.user_id = $1 AND g.asset_id > $2",
                    limit,
                );
                self.candidate_round(&sql, user, after, limit).await
            }
            Backend::Sqlite => {
                let sql = unscoped_sqlite_sql(
                    "assets",
                    "UNION SELECT a.id FROM project_members m \
                       JOIN assets a ON a.id IN (SELECT id FROM assets \
                         WHERE project_id = m.project_id AND id > $2 ORDER BY id LIMIT $3) \
                       WHERE m.user_id = $1 \
                     UNION SELECT asset_id FROM asset_grants WHERE user_id = $1 AND asset_id > $2",
                    limit,
                );
                self.candidate_round(&sql, user, after, limit).await
            }
        }
    }

    /// Runs an [`unscoped_sql`] or [`unscoped_sqlite_sql`] statement for
    /// `user` after `after`.
    async fn candidate_round(
        &self,
        sql: &str,
        user: &str,
        after: &str,
        limit: i64,
    ) -> Result<CandidateRound, StoreError> {
        let rows = sqlx::query(sql)
            .bind(user)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut round = CandidateRound::default();
        for row in &rows {
            let id = text(row, "id")?;
            // A boolean on Postgres, 0 or 1 on SQLite.
            let through = row
                .try_get::<bool, _>("through")
                .or_else(|_| row.try_get::<i64, _>("through").map(|t| t != 0))
                .map_err(|e| StoreError::Query(format!("column through: {e}")))?;
            if through {
                round.through = Some(id);
            } else {
                round.ids.push(id);
            }
        }
        // Append keeps its arms' order, but nothing promises it.
        round.ids.sort_unstable();
        Ok(round)
    }

    /// [`Store::asset_candidates`] within a workspace and/or project. An
    /// owner or member of the workspace reads the index (workspace_id, id)
    /// from `after` and stops after `limit`; project members and grantees add
    /// the assets of their relations. A page costs about `limit` rows, not
    /// the size of the workspace.
    ///
    /// The memberships and grants arms start from the user's own rows and
    /// test the scope with a scalar subquery per row, which Postgres cannot
    /// turn into a join: written as joins on the assets, the generic plan of
    /// this prepared statement (the one Postgres settles on after five runs)
    /// read every asset of the workspace after the cursor through a bitmap
    /// (2.9 ms a page in a workspace of 10,000 instead of 0.3 ms).
    async fn scoped_asset_candidates(
        &self,
        user: &str,
        workspace: &str,
        project: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        // $1 user, $2 after, $3 limit, $4 the workspace (else the project),
        // $5 the project when both are given.
        let (ws, filter, project_filter) = match (workspace.is_empty(), project.is_empty()) {
            (false, true) => ("$4", "a.workspace_id = $4", "p.workspace_id = $4"),
            (true, _) => (
                "(SELECT workspace_id FROM projects WHERE id = $4)",
                "a.project_id = $4",
                "p.id = $4",
            ),
            (false, false) => (
                "$4",
                "a.workspace_id = $4 AND a.project_id = $5",
                "p.workspace_id = $4 AND p.id = $5",
            ),
        };
        let sql = format!(
            "SELECT id FROM (\
               SELECT id FROM (SELECT a.id AS id FROM assets a WHERE {filter} AND a.id > $2 \
                   AND EXISTS (SELECT 1 FROM workspaces w WHERE w.id = {ws} AND w.owner_id = $1 \
                       UNION ALL SELECT 1 FROM workspace_members m \
                       WHERE m.workspace_id = {ws} AND m.user_id = $1) \
                   ORDER BY a.id LIMIT $3) AS whole \
               UNION SELECT a.id FROM project_members m JOIN assets a ON a.project_id = m.project_id \
                   WHERE m.user_id = $1 AND a.id > $2 \
                   AND (SELECT 1 FROM projects p WHERE p.id = m.project_id AND {project_filter}) = 1 \
               UNION SELECT g.asset_id FROM asset_grants g \
                   WHERE g.user_id = $1 AND g.asset_id > $2 \
                   AND (SELECT 1 FROM assets a WHERE a.id = g.asset_id AND {filter}) = 1\
             ) c ORDER BY id LIMIT $3"
        );
        let mut query =
            sqlx::query(&sql)
                .bind(user)
                .bind(after)
                .bind(limit)
                .bind(if workspace.is_empty() {
                    project
                } else {
                    workspace
                });
        if !workspace.is_empty() && !project.is_empty() {
            query = query.bind(project);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(|row| text(row, "id")).collect()
    }

    /// Where `ty` `id` lives, for a subject search: `None` when it does not exist.
    pub async fn subject_scope(
        &self,
        ty: &str,
        id: &str,
    ) -> Result<Option<SubjectScope>, StoreError> {
        let Some(workspace) = self.workspace_of(ty, id).await? else {
            return Ok(None);
        };
        let project = match ty {
            "Project" => id.to_string(),
            "Asset" => match self.asset(id).await? {
                Some(a) => a.project.to_string(),
                None => return Ok(None),
            },
            _ => String::new(),
        };
        let asset = if ty == "Asset" {
            id.to_string()
        } else {
            String::new()
        };
        Ok(Some(SubjectScope {
            workspace,
            project,
            asset,
        }))
    }

    /// Ids of users with a relation to the resource of `scope`: the
    /// workspace's owner and members, the project's members, the asset's
    /// grantees (and, for a workspace, members of its projects), after
    /// `after`, in id order.
    ///
    /// Each relation gives at most one page after the cursor, read in user
    /// order from its `(scope, user_id)` index, so the database reads about
    /// a page per relation whether the workspace has ten members or a
    /// hundred thousand. On Postgres the members of a workspace's projects
    /// page per project (`LATERAL`: at most a page from each project);
    /// SQLite has no `LATERAL` and reads all of them after the cursor.
    pub async fn subject_candidates(
        &self,
        scope: &SubjectScope,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let of_projects = match self.backend() {
            Backend::Postgres => {
                "SELECT m.user_id AS id FROM projects p CROSS JOIN LATERAL (\
                   SELECT user_id FROM project_members WHERE project_id = p.id AND user_id > $4 \
                   ORDER BY user_id LIMIT $5) m \
                 WHERE $2 = '' AND p.workspace_id = $1"
            }
            Backend::Sqlite => {
                "SELECT m.user_id AS id FROM project_members m JOIN projects p ON p.id = m.project_id \
                 WHERE $2 = '' AND p.workspace_id = $1 AND m.user_id > $4"
            }
        };
        let sql = format!(
            "SELECT id FROM (\
               SELECT owner_id AS id FROM workspaces WHERE id = $1 AND owner_id > $4 \
               UNION SELECT id FROM (SELECT user_id AS id FROM workspace_members \
                     WHERE workspace_id = $1 AND user_id > $4 ORDER BY user_id LIMIT $5) wm \
               UNION SELECT id FROM (SELECT user_id AS id FROM project_members \
                     WHERE project_id = $2 AND user_id > $4 ORDER BY user_id LIMIT $5) pm \
               UNION SELECT id FROM (SELECT user_id AS id FROM asset_grants \
                     WHERE asset_id = $3 AND user_id > $4 ORDER BY user_id LIMIT $5) g \
               UNION {of_projects}\
             ) c ORDER BY id LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(&scope.workspace)
            .bind(&scope.project)
            .bind(&scope.asset)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| text(row, "id")).collect()
    }

    async fn ids(
        &self,
        sql: &str,
        user: &str,
        after: &str,
        within: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut query = sqlx::query(sql).bind(user).bind(after);
        if let Some(within) = within {
            query = query.bind(within);
        }
        let rows = query.bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(|row| text(row, "id")).collect()
    }

    /// A page of a target's audit trail: events after `after_id`, oldest first.
    pub async fn audit_page(
        &self,
        target_type: &str,
        target_id: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, before, after, request_id, revision FROM audit_events \
             WHERE target_type = $1 AND target_id = $2 AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(target_type)
        .bind(target_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let parse_json = |v: Option<String>| {
            v.and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .unwrap_or(Value::Null)
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(json!({
                "id": i64_of(row, "id")?,
                "at": i64_of(row, "at")?,
                "actor": text(row, "actor")?,
                "action": text(row, "action")?,
                "before": parse_json(opt_text(row, "before")?),
                "after": parse_json(opt_text(row, "after")?),
                "request_id": opt_text(row, "request_id")?,
                "revision": opt_i64(row, "revision")?,
            }));
        }
        Ok(out)
    }

    /// The invites of a workspace or project, newest first.
    pub async fn invites(
        &self,
        scope: Scope,
        scope_id: &str,
    ) -> Result<Vec<InviteInfo>, StoreError> {
        let column = match scope {
            Scope::Workspace => "workspace_id",
            Scope::Project => "project_id",
        };
        let rows = sqlx::query(&format!(
            "SELECT id, email, role, created_by, created_at, expires_at, accepted_at, revoked_at \
             FROM invites WHERE {column} = $1 ORDER BY created_at DESC, id"
        ))
        .bind(scope_id)
        .fetch_all(self.pool())
        .await?;
        let now = now_millis();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(InviteInfo {
                id: text(row, "id")?,
                scope,
                scope_id: scope_id.to_string(),
                email: text(row, "email")?,
                role: parse(&text(row, "role")?, "role")?,
                created_by: text(row, "created_by")?,
                created_at: i64_of(row, "created_at")?,
                expires_at: i64_of(row, "expires_at")?,
                status: invite_status(row, now)?,
            });
        }
        Ok(out)
    }

    /// The scope of invite `id`, if it exists.
    pub async fn invite_scope(&self, invite: &str) -> Result<Option<(Scope, String)>, StoreError> {
        let row = sqlx::query("SELECT workspace_id, project_id FROM invites WHERE id = $1")
            .bind(invite)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(
            match (
                opt_text(&row, "workspace_id")?,
                opt_text(&row, "project_id")?,
            ) {
                (Some(w), _) => Some((Scope::Workspace, w)),
                (None, Some(p)) => Some((Scope::Project, p)),
                (None, None) => None,
            },
        )
    }

    /// The invite whose token hashes to `hash`: usable, or why not (410).
    pub async fn invite_by_token(
        &self,
        hash: &str,
    ) -> Result<Result<PendingInvite, ManageError>, StoreError> {
        let row = sqlx::query(
            "SELECT id, workspace_id, project_id, email, role, expires_at, accepted_at, revoked_at \
             FROM invites WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(Err(ManageError::NotFound(
                "no invite has this token; check that it was copied whole".into(),
            )));
        };
        match invite_status(&row, now_millis())? {
            "pending" => {}
            status => {
                return Ok(Err(ManageError::Gone(format!(
                    "this invite is {status}; ask for a new one"
                ))))
            }
        }
        let (scope, scope_id) = match (
            opt_text(&row, "workspace_id")?,
            opt_text(&row, "project_id")?,
        ) {
            (Some(w), _) => (Scope::Workspace, w),
            (None, Some(p)) => (Scope::Project, p),
            (None, None) => return Err(StoreError::Query("invite without a scope".into())),
        };
        Ok(Ok(PendingInvite {
            id: text(&row, "id")?,
            scope,
            scope_id,
            email: text(&row, "email")?,
            role: parse(&text(&row, "role")?, "role")?,
        }))
    }
}

/// The workspace `scope`/`id` lives in, read inside the transaction.
async fn workspace_in_tx(tx: &mut Tx, ty: &str, id: &str) -> Result<Option<String>, ManageError> {
    let row = sqlx::query(workspace_of_sql(ty))
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(row.map(|row| text(&row, "w")).transpose()?)
}

/// Refuses when `ty` `id` no longer lives in `expected` (moved or deleted
/// since the policies were asked).
async fn still_in(tx: &mut Tx, ty: &str, id: &str, expected: &str) -> Result<(), ManageError> {
    match workspace_in_tx(tx, ty, id).await? {
        Some(w) if w == expected => Ok(()),
        Some(_) => Err(ManageError::Conflict(format!(
            "{ty} {id} moved to another workspace while this request was decided; retry"
        ))),
        None => Err(ManageError::NotFound(format!(
            "no {} {id}",
            ty.to_lowercase()
        ))),
    }
}

async fn user_kind_in_tx(tx: &mut Tx, user: &str) -> Result<UserKind, ManageError> {
    let row = sqlx::query("SELECT kind FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(tx.conn())
        .await?;
    match row {
        Some(row) => Ok(parse(&text(&row, "kind")?, "user kind")?),
        None => Err(ManageError::NotFound(format!(
            "no user {user}; users are created by sign-in (resolve-user), anonymous sign-up or import"
        ))),
    }
}

fn taken(e: ManageError, what: String) -> ManageError {
    match e {
        ManageError::Store(StoreError::Conflict(_)) => ManageError::Conflict(what),
        other => other,
    }
}

impl Store {
    /// Begins the transaction of `change`. Once it holds the write lock
    /// (Postgres: the revision row; SQLite: BEGIN IMMEDIATE), the decisions
    /// that authorized the change are asked again over the facts read in
    /// it, which no other writer can change before it commits; a change
    /// they no longer allow is refused and nothing is written.
    async fn begin_change(&self, change: &Change) -> Result<Tx, ManageError> {
        let mut tx = self.begin().await?;
        if let Some(authorized) = &change.authorized {
            let keys = authorized.keys();
            if !keys.is_empty() {
                let world = tx.load_facts(&keys).await?;
                authorized.recheck(&world)?;
            }
        }
        Ok(tx)
    }

    /// Creates workspace `w` owned by its `owner`.
    pub async fn create_workspace(
        &self,
        w: &WorkspaceRecord,
        change: &Change,
    ) -> Result<(), ManageError> {
        let now = now_millis();
        let mut tx = self.begin_change(change).await?;
        sqlx::query(
            "INSERT INTO workspaces (id, owner_id, visibility, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(w.id.as_str())
        .bind(w.owner.as_str())
        .bind(w.visibility.as_str())
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(|e| taken(e.into(), format!("workspace id {} is taken; choose another or omit it", w.id)))?;
        tx.changed_only([revision::workspace(w.id.as_str())]);
        tx.commit(change.event(
            "workspace.create",
            "workspace",
            w.id.as_str(),
            None,
            Some(json!(w)),
        ))
        .await?;
        Ok(())
    }

    /// Creates project `p` in its workspace.
    pub async fn create_project(
        &self,
        p: &ProjectRecord,
        change: &Change,
    ) -> Result<(), ManageError> {
        let now = now_millis();
        let mut tx = self.begin_change(change).await?;
        still_in(
            &mut tx,
            "Workspace",
            p.workspace.as_str(),
            p.workspace.as_str(),
        )
        .await?;
        sqlx::query(
            "INSERT INTO projects (id, workspace_id, visibility, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(p.id.as_str())
        .bind(p.workspace.as_str())
        .bind(p.visibility.as_str())
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(|e| taken(e.into(), format!("project id {} is taken; choose another or omit it", p.id)))?;
        tx.changed_only([revision::project(p.id.as_str())]);
        tx.commit(change.event(
            "project.create",
            "project",
            p.id.as_str(),
            None,
            Some(json!(p)),
        ))
        .await?;
        Ok(())
    }

    /// Creates asset `a` in its project, which must still be in `workspace`.
    pub async fn create_asset(
        &self,
        a: &AssetRecord,
        workspace: &str,
        change: &Change,
    ) -> Result<(), ManageError> {
        let now = now_millis();
        let mut tx = self.begin_change(change).await?;
        still_in(&mut tx, "Project", a.project.as_str(), workspace).await?;
        sqlx::query(
            "INSERT INTO assets (id, project_id, visibility, public_access, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(a.id.as_str())
        .bind(a.project.as_str())
        .bind(a.visibility.as_str())
        .bind(a.public_access.as_str())
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(|e| taken(e.into(), format!("asset id {} is taken; choose another or omit it", a.id)))?;
        tx.changed_only([revision::asset(a.id.as_str())]);
        tx.commit(change.event("asset.create", "asset", a.id.as_str(), None, Some(json!(a))))
            .await?;
        Ok(())
    }

    /// Updates a workspace's visibility and/or owner. Transferring ownership
    /// keeps the previous owner as a member with role owner.
    pub async fn update_workspace(
        &self,
        before: &WorkspaceRecord,
        after: &WorkspaceRecord,
        change: &Change,
    ) -> Result<(), ManageError> {
        let mut tx = self.begin_change(change).await?;
        if before.owner != after.owner {
            user_kind_in_tx(&mut tx, after.owner.as_str()).await?;
            sqlx::query(
                "INSERT INTO workspace_members (user_id, workspace_id, role, created_at) VALUES ($1, $2, 'owner', $3) \
                 ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = 'owner'",
            )
            .bind(before.owner.as_str())
            .bind(before.id.as_str())
            .bind(now_millis())
            .execute(tx.conn())
            .await?;
            // The new owner holds ownership by the owner field, not a row.
            sqlx::query("DELETE FROM workspace_members WHERE user_id = $1 AND workspace_id = $2")
                .bind(after.owner.as_str())
                .bind(before.id.as_str())
                .execute(tx.conn())
                .await?;
        }
        let updated = sqlx::query(
            "UPDATE workspaces SET visibility = $1, owner_id = $2, updated_at = $3 WHERE id = $4 AND owner_id = $5",
        )
        .bind(after.visibility.as_str())
        .bind(after.owner.as_str())
        .bind(now_millis())
        .bind(before.id.as_str())
        .bind(before.owner.as_str())
        .execute(tx.conn())
        .await?;
        if updated.rows_affected() != 1 {
            return Err(ManageError::Conflict(format!(
                "workspace {} changed while this request was decided; retry",
                before.id
            )));
        }
        // Both owners' memberships are theirs; the workspace key covers them
        // for every answer in the workspace, and the users' keys name the rows.
        tx.changed_only([
            revision::workspace(before.id.as_str()),
            revision::user(before.owner.as_str()),
            revision::user(after.owner.as_str()),
        ]);
        tx.commit(change.event(
            "workspace.update",
            "workspace",
            before.id.as_str(),
            Some(json!(before)),
            Some(json!(after)),
        ))
        .await?;
        Ok(())
    }

    /// Updates a project's visibility and/or moves it to another workspace
    /// (`from` is the workspace the authorization saw).
    pub async fn update_project(
        &self,
        before: &ProjectRecord,
        after: &ProjectRecord,
        change: &Change,
    ) -> Result<(), ManageError> {
        let mut tx = self.begin_change(change).await?;
        still_in(
            &mut tx,
            "Project",
            before.id.as_str(),
            before.workspace.as_str(),
        )
        .await?;
        if before.workspace != after.workspace {
            still_in(
                &mut tx,
                "Workspace",
                after.workspace.as_str(),
                after.workspace.as_str(),
            )
            .await?;
        }
        sqlx::query(
            "UPDATE projects SET visibility = $1, workspace_id = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(after.visibility.as_str())
        .bind(after.workspace.as_str())
        .bind(now_millis())
        .bind(before.id.as_str())
        .execute(tx.conn())
        .await?;
        tx.changed_only([revision::project(before.id.as_str())]);
        tx.commit(change.event(
            "project.update",
            "project",
            before.id.as_str(),
            Some(json!(before)),
            Some(json!(after)),
        ))
        .await?;
        Ok(())
    }

    /// Updates an asset's visibility, public access and/or project. The
    /// asset must still be in `from`; a new project must be in `to`.
    pub async fn update_asset(
        &self,
        before: &AssetRecord,
        after: &AssetRecord,
        (from, to): (&str, &str),
        change: &Change,
    ) -> Result<(), ManageError> {
        let mut tx = self.begin_change(change).await?;
        still_in(&mut tx, "Asset", before.id.as_str(), from).await?;
        if before.project != after.project {
            still_in(&mut tx, "Project", after.project.as_str(), to).await?;
        }
        sqlx::query(
            "UPDATE assets SET visibility = $1, public_access = $2, project_id = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(after.visibility.as_str())
        .bind(after.public_access.as_str())
        .bind(after.project.as_str())
        .bind(now_millis())
        .bind(before.id.as_str())
        .execute(tx.conn())
        .await?;
        tx.changed_only([revision::asset(before.id.as_str())]);
        tx.commit(change.event(
            "asset.update",
            "asset",
            before.id.as_str(),
            Some(json!(before)),
            Some(json!(after)),
        ))
        .await?;
        Ok(())
    }

    /// Deletes a workspace, project or asset (`ty`: `Workspace`...) and,
    /// by cascade, everything in it: projects, assets, memberships, grants,
    /// invites. The audit event counts what went.
    pub async fn delete_resource(
        &self,
        ty: &str,
        id: &str,
        before: Value,
        change: &Change,
    ) -> Result<(), ManageError> {
        let (table, target, action, key) = match ty {
            "Workspace" => (
                "workspaces",
                "workspace",
                "workspace.delete",
                revision::workspace(id),
            ),
            "Project" => (
                "projects",
                "project",
                "project.delete",
                revision::project(id),
            ),
            _ => ("assets", "asset", "asset.delete", revision::asset(id)),
        };
        let mut tx = self.begin_change(change).await?;
        let deleted = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id)
            .execute(tx.conn())
            .await?;
        if deleted.rows_affected() != 1 {
            return Err(ManageError::NotFound(format!("no {target} {id}")));
        }
        // What the cascade removes (projects, assets, memberships, grants)
        // hangs below this entity: every answer about it depends on it.
        tx.changed_only([key]);
        tx.commit(change.event(action, target, id, Some(before), None))
            .await?;
        Ok(())
    }

    /// Sets `user`'s role in a workspace or project. Audited on the scope.
    pub async fn put_member(
        &self,
        m: &MembershipRecord,
        change: &Change,
    ) -> Result<Option<Role>, ManageError> {
        let (table, column) = scope_table(m.scope);
        let mut tx = self.begin_change(change).await?;
        user_kind_in_tx(&mut tx, m.user.as_str()).await?;
        let before = member_role(&mut tx, m.scope, m.id.as_str(), m.user.as_str()).await?;
        sqlx::query(&format!(
            "INSERT INTO {table} (user_id, {column}, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, {column}) DO UPDATE SET role = $3"
        ))
        .bind(m.user.as_str())
        .bind(m.id.as_str())
        .bind(m.role.as_str())
        .bind(now_millis())
        .execute(tx.conn())
        .await
        .map_err(|e| taken(e.into(), format!("no {} {}", m.scope, m.id)))?;
        tx.changed_only([revision::user(m.user.as_str())]);
        let target = scope_target(m.scope);
        tx.commit(change.event(
            "member.put",
            target,
            m.id.as_str(),
            before.map(|r| json!({"user": m.user, "role": r})),
            Some(json!({"user": m.user, "role": m.role})),
        ))
        .await?;
        Ok(before)
    }

    /// Removes `user` from a workspace or project.
    pub async fn delete_member(
        &self,
        scope: Scope,
        scope_id: &str,
        user: &str,
        change: &Change,
    ) -> Result<(), ManageError> {
        let (table, column) = scope_table(scope);
        let mut tx = self.begin_change(change).await?;
        let Some(before) = member_role(&mut tx, scope, scope_id, user).await? else {
            return Err(ManageError::NotFound(format!(
                "{user} is not a member of {scope} {scope_id}"
            )));
        };
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE user_id = $1 AND {column} = $2"
        ))
        .bind(user)
        .bind(scope_id)
        .execute(tx.conn())
        .await?;
        tx.changed_only([revision::user(user)]);
        tx.commit(change.event(
            "member.delete",
            scope_target(scope),
            scope_id,
            Some(json!({"user": user, "role": before})),
            None,
        ))
        .await?;
        Ok(())
    }

    /// Sets `user`'s grant on an asset. Audited on the asset.
    pub async fn put_grant(
        &self,
        g: &GrantRecord,
        change: &Change,
    ) -> Result<Option<Permission>, ManageError> {
        let mut tx = self.begin_change(change).await?;
        user_kind_in_tx(&mut tx, g.user.as_str()).await?;
        let before = grant_of(&mut tx, g.asset.as_str(), g.user.as_str()).await?;
        sqlx::query(
            "INSERT INTO asset_grants (user_id, asset_id, permission, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, asset_id) DO UPDATE SET permission = $3",
        )
        .bind(g.user.as_str())
        .bind(g.asset.as_str())
        .bind(g.permission.as_str())
        .bind(now_millis())
        .execute(tx.conn())
        .await
        .map_err(|e| taken(e.into(), format!("no asset {}", g.asset)))?;
        tx.changed_only([revision::user(g.user.as_str())]);
        tx.commit(change.event(
            "grant.put",
            "asset",
            g.asset.as_str(),
            before.map(|p| json!({"user": g.user, "permission": p})),
            Some(json!({"user": g.user, "permission": g.permission})),
        ))
        .await?;
        Ok(before)
    }

    /// Removes `user`'s grant on an asset.
    pub async fn delete_grant(
        &self,
        asset: &str,
        user: &str,
        change: &Change,
    ) -> Result<(), ManageError> {
        let mut tx = self.begin_change(change).await?;
        let Some(before) = grant_of(&mut tx, asset, user).await? else {
            return Err(ManageError::NotFound(format!(
                "{user} holds no grant on asset {asset}"
            )));
        };
        sqlx::query("DELETE FROM asset_grants WHERE user_id = $1 AND asset_id = $2")
            .bind(user)
            .bind(asset)
            .execute(tx.conn())
            .await?;
        tx.changed_only([revision::user(user)]);
        tx.commit(change.event(
            "grant.delete",
            "asset",
            asset,
            Some(json!({"user": user, "permission": before})),
            None,
        ))
        .await?;
        Ok(())
    }

    /// Stores a new invite (its token hashed). Audited on the scope, with
    /// the invite's id, email and role, never the token.
    pub async fn create_invite(
        &self,
        invite: &NewInvite,
        change: &Change,
    ) -> Result<(), ManageError> {
        let (w, p) = match invite.scope {
            Scope::Workspace => (Some(invite.scope_id.as_str()), None),
            Scope::Project => (None, Some(invite.scope_id.as_str())),
        };
        let mut tx = self.begin_change(change).await?;
        sqlx::query(
            "INSERT INTO invites (id, token_hash, workspace_id, project_id, email, role, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&invite.id)
        .bind(&invite.token_hash)
        .bind(w)
        .bind(p)
        .bind(&invite.email)
        .bind(invite.role.as_str())
        .bind(change.actor.as_str())
        .bind(now_millis())
        .bind(invite.expires_at)
        .execute(tx.conn())
        .await
        .map_err(|e| taken(e.into(), format!("no {} {}", invite.scope, invite.scope_id)))?;
        // Invites are no decision's facts.
        tx.changed_only([]);
        tx.commit(change.event(
            "invite.create",
            scope_target(invite.scope),
            invite.scope_id.as_str(),
            None,
            Some(json!({"invite": invite.id, "email": invite.email, "role": invite.role, "expires_at": invite.expires_at})),
        ))
        .await?;
        Ok(())
    }

    /// Revokes a pending invite.
    pub async fn revoke_invite(&self, invite: &str, change: &Change) -> Result<(), ManageError> {
        let Some((scope, scope_id)) = self.invite_scope(invite).await? else {
            return Err(ManageError::NotFound(format!("no invite {invite}")));
        };
        let mut tx = self.begin_change(change).await?;
        let now = now_millis();
        let revoked = sqlx::query(
            "UPDATE invites SET revoked_at = $1 WHERE id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(invite)
        .execute(tx.conn())
        .await?;
        if revoked.rows_affected() != 1 {
            return Err(ManageError::Gone(format!(
                "invite {invite} was already accepted or revoked"
            )));
        }
        tx.changed_only([]);
        tx.commit(change.event(
            "invite.revoke",
            scope_target(scope),
            &scope_id,
            Some(json!({"invite": invite})),
            None,
        ))
        .await?;
        Ok(())
    }

    /// Uses a pending invite for `user`: marks it accepted (only if still
    /// pending: of concurrent accepts exactly one wins) and gives `user` the
    /// role, keeping a stronger role the user already holds.
    pub async fn accept_invite(
        &self,
        invite: &PendingInvite,
        user: &str,
        change: &Change,
    ) -> Result<Role, ManageError> {
        let mut tx = self.begin_change(change).await?;
        let now = now_millis();
        let used = sqlx::query(
            "UPDATE invites SET accepted_at = $1, accepted_by = $2 \
             WHERE id = $3 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(user)
        .bind(&invite.id)
        .execute(tx.conn())
        .await?;
        if used.rows_affected() != 1 {
            return Err(ManageError::Gone(
                "this invite was used, revoked or has expired; ask for a new one".into(),
            ));
        }
        let before = member_role(&mut tx, invite.scope, &invite.scope_id, user).await?;
        let rank = |r: Role| match r {
            Role::Owner => 3,
            Role::Editor => 2,
            Role::Viewer => 1,
        };
        let role = match before {
            Some(held) if rank(held) >= rank(invite.role) => held,
            _ => invite.role,
        };
        let (table, column) = scope_table(invite.scope);
        sqlx::query(&format!(
            "INSERT INTO {table} (user_id, {column}, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, {column}) DO UPDATE SET role = $3"
        ))
        .bind(user)
        .bind(&invite.scope_id)
        .bind(role.as_str())
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.changed_only([revision::user(user)]);
        tx.commit(change.event(
            "invite.accept",
            scope_target(invite.scope),
            &invite.scope_id,
            before.map(|r| json!({"user": user, "role": r})),
            Some(json!({"invite": invite.id, "user": user, "role": role})),
        ))
        .await?;
        Ok(role)
    }
}

fn scope_target(scope: Scope) -> &'static str {
    match scope {
        Scope::Workspace => "workspace",
        Scope::Project => "project",
    }
}

async fn member_role(
    tx: &mut Tx,
    scope: Scope,
    scope_id: &str,
    user: &str,
) -> Result<Option<Role>, ManageError> {
    let (table, column) = scope_table(scope);
    let row = sqlx::query(&format!(
        "SELECT role FROM {table} WHERE user_id = $1 AND {column} = $2"
    ))
    .bind(user)
    .bind(scope_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row
        .map(|row| parse(&text(&row, "role")?, "role"))
        .transpose()?)
}

async fn grant_of(tx: &mut Tx, asset: &str, user: &str) -> Result<Option<Permission>, ManageError> {
    let row =
        sqlx::query("SELECT permission FROM asset_grants WHERE user_id = $1 AND asset_id = $2")
            .bind(user)
            .bind(asset)
            .fetch_optional(tx.conn())
            .await?;
    Ok(row
        .map(|row| parse(&text(&row, "permission")?, "permission"))
        .transpose()?)
}
