//! Entity slices: the facts one decision (or one batch of decisions) can
//! need, in one database round trip.
//!
//! Given the principals and resources of the requests, one statement returns
//! the users, each resource with its ancestors (asset -> project ->
//! workspace), and only those memberships and grants of the principals that
//! touch those ancestors. Every lookup is by primary key or a leading index
//! column, so the cost does not grow with the tables.

use super::{id, opt_text, parse, required, text, values_list, Backend, Store, StoreError};
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

/// The statement for lists of these sizes. Records are looked up by id.
/// On Postgres each id is its own primary-key probe (a `LATERAL` subquery
/// with `LIMIT 1`, which the planner cannot turn into a join): as a plain
/// `IN` list, the generic plan of this prepared statement hashed a
/// sequential scan of the whole table whenever the table was small enough
/// for that to look cheap (20,000 assets: about 4 ms for 100 ids instead
/// of 0.3 ms), and the cost grew with the table. SQLite looks `IN` lists up
/// by index on its own and has no `LATERAL`. `pairs`: whether memberships
/// and grants are looked up pair by pair ([`held`]).
fn sql(
    backend: Backend,
    users: usize,
    workspaces: usize,
    projects: usize,
    assets: usize,
    pairs: bool,
) -> String {
    let ku = values_list(1, users);
    let kw = values_list(1 + users, workspaces);
    let kp = values_list(1 + users + workspaces, projects);
    let ka = values_list(1 + users + workspaces + projects, assets);
    // `keys` (a query of one column, `id`) joined to the rows of `table`
    // with those ids, as `alias` with `columns`.
    let by_id = |keys: &str, table: &str, columns: &str, alias: &str| match backend {
        Backend::Postgres => format!(
            "SELECT {alias}.* FROM ({keys}) AS k CROSS JOIN LATERAL \
             (SELECT {columns} FROM {table} WHERE id = k.id LIMIT 1) AS {alias}"
        ),
        Backend::Sqlite => {
            format!("SELECT {columns} FROM {table} AS {alias} WHERE id IN ({keys})")
        }
    };
    let ra = by_id(
        "SELECT id FROM ka",
        "assets",
        "id, project_id, visibility, public_access",
        "a",
    );
    let rp = by_id(
        "SELECT id FROM kp UNION SELECT project_id FROM ra",
        "projects",
        "id, workspace_id, visibility",
        "p",
    );
    let rw = by_id(
        "SELECT id FROM kw UNION SELECT workspace_id FROM rp",
        "workspaces",
        "id, owner_id, visibility",
        "w",
    );
    let ru = by_id("SELECT id FROM ku", "users", "id, kind, merged_into", "u");
    let wm = held(
        backend,
        pairs,
        "wm",
        "workspace_members",
        "workspace_id",
        "role",
        "rw",
    );
    let pm = held(
        backend,
        pairs,
        "pm",
        "project_members",
        "project_id",
        "role",
        "rp",
    );
    let g = held(
        backend,
        pairs,
        "g",
        "asset_grants",
        "asset_id",
        "permission",
        "ra",
    );
    format!(
        "WITH ku(id) AS (VALUES {ku}), kw(id) AS (VALUES {kw}), \
              kp(id) AS (VALUES {kp}), ka(id) AS (VALUES {ka}), \
         ra AS ({ra}), rp AS ({rp}), rw AS ({rw}), ru AS ({ru}) \
         SELECT 'u' AS k, id AS a, kind AS b, merged_into AS c, NULL AS d FROM ru \
         UNION ALL SELECT 'w', id, owner_id, visibility, NULL FROM rw \
         UNION ALL SELECT 'p', id, workspace_id, visibility, NULL FROM rp \
         UNION ALL SELECT 'a', id, project_id, visibility, public_access FROM ra \
         UNION ALL {wm} UNION ALL {pm} UNION ALL {g}"
    )
}

/// The branch of the fact statement that reads `table`: the memberships
/// (or grants) of the key users on the loaded scopes (`loaded`, a CTE of
/// `scope` ids), as rows of `kind`.
///
/// With `pairs`, each (user, scope) pair is looked up in the primary key,
/// and on Postgres a `LATERAL ... LIMIT 1` keeps it so: for one user and
/// many scopes, or many users and one resource (the two searches' pages),
/// the probes are as many as the keys. As a semi-join over both lists the
/// planner, expecting a workspace's average of a few members, read *every*
/// member of the scope: a page of 100 subjects of a workspace of 20,000
/// members read all 20,000 (5.4 ms a page, so a whole listing quadratic in
/// the members). Batches of many users on many resources keep the
/// semi-join: pairing each user with each scope cost them more than it
/// saved (batches of 10 random checks lost 22% of their rate).
fn held(
    backend: Backend,
    pairs: bool,
    kind: &str,
    table: &str,
    scope: &str,
    value: &str,
    loaded: &str,
) -> String {
    if !pairs {
        return format!(
            "SELECT '{kind}', user_id, {scope}, {value}, NULL FROM {table} \
             WHERE user_id IN (SELECT id FROM ku) AND {scope} IN (SELECT id FROM {loaded})"
        );
    }
    match backend {
        Backend::Postgres => format!(
            "SELECT '{kind}', m.user_id, m.{scope}, m.{value}, NULL \
             FROM ku CROSS JOIN {loaded} AS s CROSS JOIN LATERAL \
             (SELECT user_id, {scope}, {value} FROM {table} \
              WHERE user_id = ku.id AND {scope} = s.id LIMIT 1) AS m"
        ),
        Backend::Sqlite => format!(
            "SELECT '{kind}', m.user_id, m.{scope}, m.{value}, NULL \
             FROM ku CROSS JOIN {loaded} AS s \
             JOIN {table} AS m ON m.user_id = ku.id AND m.{scope} = s.id"
        ),
    }
}

/// The keys of one check: at most one user and one resource (a workspace,
/// a project or an asset), as [`FactKeys`] holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pair {
    /// The user.
    pub user: Option<String>,
    /// The resource, if a workspace.
    pub workspace: Option<String>,
    /// The resource, if a project.
    pub project: Option<String>,
    /// The resource, if an asset.
    pub asset: Option<String>,
}

impl Pair {
    /// `keys` as one pair, when they name at most one user and one resource.
    pub fn of(keys: &FactKeys) -> Option<Pair> {
        let resources = keys.workspaces.len() + keys.projects.len() + keys.assets.len();
        (keys.users.len() <= 1 && resources <= 1).then(|| Pair {
            user: first(&keys.users),
            workspace: first(&keys.workspaces),
            project: first(&keys.projects),
            asset: first(&keys.assets),
        })
    }
}

/// Most pairs one statement reads ([`pairs_sql`]); four parameters each.
pub const MAX_PAIRS: usize = 64;

/// The statement reading the facts of `n` pairs (a power of two up to
/// [`MAX_PAIRS`]; the unused rows are bound to NULL), one row per pair in
/// column `n`: the user, the resource and its ancestors by primary key, and
/// the user's membership or grant on each as a correlated primary-key
/// probe. For one pair it is the statement of a single check; a group of
/// single checks arriving together shares one ([`super::coalesce`]), which
/// costs the database far less per check than a statement each (no
/// per-statement round trip, parse, snapshot and executor start-up). On
/// Postgres each lookup is a `LATERAL ... LIMIT 1` so that the generic plan
/// of the prepared statement stays a primary-key probe per row (as a plain
/// join the planner may hash a sequential scan of a small table, and the
/// cost grows with it); SQLite looks joins up by primary key on its own.
fn pairs_sql(backend: Backend, n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let at = 4 * i;
            format!("({i}, ${}, ${}, ${}, ${})", at + 1, at + 2, at + 3, at + 4)
        })
        .collect();
    let lookup = |table: &str, columns: &str, key: &str, alias: &str| {
        match backend {
        Backend::Postgres => format!(
            "LEFT JOIN LATERAL (SELECT {columns} FROM {table} WHERE id = {key} LIMIT 1) AS {alias} ON true"
        ),
        Backend::Sqlite => format!("LEFT JOIN {table} AS {alias} ON {alias}.id = {key}"),
    }
    };
    format!(
        "WITH k(n, u, w, p, a) AS (VALUES {}) \
         SELECT CAST(k.n AS BIGINT) AS n, \
            u.id AS u_id, u.kind AS u_kind, u.merged_into AS u_merged, \
            a.id AS a_id, a.project_id AS a_project, a.visibility AS a_vis, a.public_access AS a_public, \
            p.id AS p_id, p.workspace_id AS p_workspace, p.visibility AS p_vis, \
            w.id AS w_id, w.owner_id AS w_owner, w.visibility AS w_vis, \
            (SELECT role FROM workspace_members m WHERE m.user_id = u.id AND m.workspace_id = w.id) AS wm, \
            (SELECT role FROM project_members m WHERE m.user_id = u.id AND m.project_id = p.id) AS pm, \
            (SELECT permission FROM asset_grants g WHERE g.user_id = u.id AND g.asset_id = a.id) AS g \
         FROM k {} {} {} {}",
        rows.join(", "),
        lookup("users", "id, kind, merged_into", "k.u", "u"),
        lookup("assets", "id, project_id, visibility, public_access", "k.a", "a"),
        lookup("projects", "id, workspace_id, visibility", "COALESCE(a.project_id, k.p)", "p"),
        lookup("workspaces", "id, owner_id, visibility", "COALESCE(p.workspace_id, k.w)", "w"),
    )
}

/// [`pairs_sql`] for `n` pairs (at most [`MAX_PAIRS`]), written once per
/// backend and size.
fn pairs_statement(backend: Backend, n: usize) -> Option<&'static str> {
    use std::sync::OnceLock;
    const SIZES: usize = MAX_PAIRS.trailing_zeros() as usize + 1;
    static POSTGRES: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    static SQLITE: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    let size = padded(n);
    let cells = match backend {
        Backend::Postgres => &POSTGRES,
        Backend::Sqlite => &SQLITE,
    };
    let cell = cells.get(size.trailing_zeros() as usize)?;
    Some(cell.get_or_init(|| pairs_sql(backend, size)).as_str())
}

fn first(set: &BTreeSet<String>) -> Option<String> {
    set.iter().next().cloned()
}

impl Store {
    /// Loads the facts for `keys` in one round trip: the users, the
    /// resources with their ancestors, and the users' memberships and grants
    /// on those resources and ancestors. The facts of a single check (one
    /// user, one resource) are read together with those of the other single
    /// checks waiting at the same time, in one statement
    /// ([`super::coalesce`]); each is read by a statement sent after it was
    /// asked for, so it holds every write committed before.
    pub async fn load_facts(&self, keys: &FactKeys) -> Result<World, StoreError> {
        self.count_fact_load();
        match Pair::of(keys) {
            Some(pair) => self.single_loads().load(pair).await,
            None => {
                self.read_again_if_lost(|| fetch_facts(self.pool(), self.backend(), keys))
                    .await
            }
        }
    }
}

impl super::Tx {
    /// [`Store::load_facts`] inside this transaction: the facts as this
    /// writer sees them, which no other writer can change before it ends.
    pub async fn load_facts(&mut self, keys: &FactKeys) -> Result<World, StoreError> {
        super::count_fact_load(&self.fact_loads);
        let backend = self.backend;
        match Pair::of(keys) {
            Some(pair) => {
                let mut worlds = fetch_pairs(self.conn(), backend, &[&pair]).await?;
                Ok(worlds.pop().unwrap_or_default())
            }
            None => fetch_facts(self.conn(), backend, keys).await,
        }
    }
}

/// The statement of [`Store::load_facts`], on the pool or a transaction.
async fn fetch_facts<'c, E>(
    executor: E,
    backend: Backend,
    keys: &FactKeys,
) -> Result<World, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let resources = keys.workspaces.len() + keys.projects.len() + keys.assets.len();
    let lists = [&keys.users, &keys.workspaces, &keys.projects, &keys.assets];
    let mut sizes = lists.map(|l| padded(l.len()));
    if sizes.iter().sum::<usize>() > MAX_PARAMETERS {
        // Padding must never push a large batch past the parameter limit.
        sizes = lists.map(|l| l.len().max(1));
    }
    // One side single: pair lookups are as many as the keys.
    let pairs = keys.users.len() <= 1 || resources <= 1;
    let statement = sql(backend, sizes[0], sizes[1], sizes[2], sizes[3], pairs);
    let mut query = sqlx::query(&statement);
    for (list, size) in lists.iter().zip(sizes) {
        for value in list.iter() {
            query = query.bind(value.as_str());
        }
        for _ in list.len()..size {
            query = query.bind(None::<String>);
        }
    }
    let rows = query.fetch_all(executor).await?;
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

/// The facts of each of `pairs` (at most [`MAX_PAIRS`]) in one statement
/// ([`pairs_sql`]), as one world per pair, in order.
pub(super) async fn fetch_pairs<'c, E>(
    executor: E,
    backend: Backend,
    pairs: &[&Pair],
) -> Result<Vec<World>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let statement = pairs_statement(backend, pairs.len()).ok_or_else(|| {
        StoreError::Query(format!(
            "{} pairs in one fact statement; at most {MAX_PAIRS}",
            pairs.len()
        ))
    })?;
    let mut query = sqlx::query(statement);
    for pair in pairs {
        query = query
            .bind(pair.user.as_deref())
            .bind(pair.workspace.as_deref())
            .bind(pair.project.as_deref())
            .bind(pair.asset.as_deref());
    }
    for _ in pairs.len()..padded(pairs.len()) {
        for _ in 0..4 {
            query = query.bind(None::<&str>);
        }
    }
    let rows = query.fetch_all(executor).await?;
    let mut worlds: Vec<World> = pairs.iter().map(|_| World::default()).collect();
    for row in &rows {
        let n = usize::try_from(super::i64_of(row, "n")?).ok();
        // The padding's rows (and only they) fall outside `pairs`.
        if let Some(world) = n.and_then(|n| worlds.get_mut(n)) {
            *world = pair_world(row)?;
        }
    }
    Ok(worlds)
}

/// One row of [`pairs_sql`] as the world of its pair.
fn pair_world(row: &sqlx::any::AnyRow) -> Result<World, StoreError> {
    let mut world = World::default();
    let column = |name: &str| opt_text(row, name);
    if let Some(user) = column("u_id")? {
        world.users.push(UserRecord {
            id: id(user)?,
            kind: parse(&required(column("u_kind")?, "user kind")?, "user kind")?,
            email: None,
            name: None,
            merged_into: column("u_merged")?.map(id).transpose()?,
        });
    }
    if let Some(a) = column("a_id")? {
        world.assets.push(AssetRecord {
            id: id(a)?,
            project: id(required(column("a_project")?, "project")?)?,
            visibility: parse(&required(column("a_vis")?, "visibility")?, "visibility")?,
            public_access: parse(
                &required(column("a_public")?, "public access")?,
                "public access",
            )?,
        });
    }
    if let Some(p) = column("p_id")? {
        world.projects.push(ProjectRecord {
            id: id(p)?,
            workspace: id(required(column("p_workspace")?, "workspace")?)?,
            visibility: parse(&required(column("p_vis")?, "visibility")?, "visibility")?,
        });
    }
    if let Some(w) = column("w_id")? {
        world.workspaces.push(WorkspaceRecord {
            id: id(w)?,
            owner: id(required(column("w_owner")?, "owner")?)?,
            visibility: parse(&required(column("w_vis")?, "visibility")?, "visibility")?,
        });
    }
    let Some(user) = world.users.first().map(|u| u.id.clone()) else {
        return Ok(world);
    };
    let scopes = [
        (
            "wm",
            Scope::Workspace,
            world.workspaces.first().map(|w| &w.id),
        ),
        ("pm", Scope::Project, world.projects.first().map(|p| &p.id)),
    ];
    for (name, scope, on) in scopes {
        if let (Some(role), Some(on)) = (column(name)?, on) {
            world.memberships.push(MembershipRecord {
                user: user.clone(),
                scope,
                id: on.clone(),
                role: parse(&role, "role")?,
            });
        }
    }
    if let (Some(permission), Some(asset)) = (column("g")?, world.assets.first()) {
        world.grants.push(GrantRecord {
            user,
            asset: asset.id.clone(),
            permission: parse(&permission, "permission")?,
        });
    }
    Ok(world)
}
