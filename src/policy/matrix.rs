//! `warden matrix`: the permission matrix a security reviewer reads. For each
//! resource type, one row per principal situation of CONTRACT §3, one column
//! per action; each cell is what the loaded policies decide, with the `@id`s
//! that decided it. Nothing here is written by hand: every cell is a Cedar
//! evaluation over a small world built for that row.

use super::probe::{ask, Answer, Probe};
use super::PolicyEngine;
use crate::decision::{Authn, EntityRef, RawDecision};
use crate::domain::{
    AssetRecord, GrantRecord, Id, MembershipRecord, Permission, ProjectRecord, PublicAccess, Role,
    Scope, UserKind, UserRecord, Visibility, WorkspaceRecord, World,
};
use std::fmt::Write;

/// Resource types in the order the tables appear.
const TYPES: [&str; 3] = ["Workspace", "Project", "Asset"];

/// Actions in the order of CONTRACT §3; others follow alphabetically.
const ACTION_ORDER: [&str; 8] = [
    "read",
    "write",
    "delete",
    "share",
    "manage_members",
    "invite",
    "create_project",
    "create_asset",
];

/// Who the principal is relative to workspace `w` (owned by `owner`),
/// project `p` in it and asset `a` in that.
#[derive(Clone, Copy)]
struct Situation {
    label: &'static str,
    kind: UserKind,
    merged: bool,
    authn: Authn,
    /// The principal is `w`'s owner.
    owner: bool,
    ws_role: Option<Role>,
    p_role: Option<Role>,
    grant: Option<Permission>,
    /// An editor of another workspace, nothing here.
    other_member: bool,
    ws: Visibility,
    p: Visibility,
    a: Visibility,
    access: PublicAccess,
    /// Only meaningful for assets (grants, public links).
    assets_only: bool,
}

const BASE: Situation = Situation {
    label: "",
    kind: UserKind::Registered,
    merged: false,
    authn: Authn::App,
    owner: false,
    ws_role: None,
    p_role: None,
    grant: None,
    other_member: false,
    ws: Visibility::Private,
    p: Visibility::Private,
    a: Visibility::Private,
    access: PublicAccess::None,
    assets_only: false,
};

const ANON: Situation = Situation {
    kind: UserKind::Anonymous,
    ..BASE
};

/// The rows: CONTRACT §3's table, then its notes on anonymous principals and
/// tokens. Everything is private unless the row says otherwise.
const SITUATIONS: &[Situation] = &[
    Situation {
        label: "workspace owner",
        owner: true,
        ..BASE
    },
    Situation {
        label: "workspace member with role owner",
        ws_role: Some(Role::Owner),
        ..BASE
    },
    Situation {
        label: "workspace editor",
        ws_role: Some(Role::Editor),
        ..BASE
    },
    Situation {
        label: "workspace viewer",
        ws_role: Some(Role::Viewer),
        ..BASE
    },
    Situation {
        label: "project editor (not a workspace member)",
        p_role: Some(Role::Editor),
        ..BASE
    },
    Situation {
        label: "project viewer (not a workspace member)",
        p_role: Some(Role::Viewer),
        ..BASE
    },
    Situation {
        label: "workspace viewer and project editor (workspace role wins)",
        ws_role: Some(Role::Viewer),
        p_role: Some(Role::Editor),
        ..BASE
    },
    Situation {
        label: "workspace editor and project viewer (workspace role wins)",
        ws_role: Some(Role::Editor),
        p_role: Some(Role::Viewer),
        ..BASE
    },
    Situation {
        label: "read grant on the asset",
        grant: Some(Permission::Read),
        assets_only: true,
        ..BASE
    },
    Situation {
        label: "write grant on the asset",
        grant: Some(Permission::Write),
        assets_only: true,
        ..BASE
    },
    Situation {
        label: "anyone, asset public with access read",
        a: Visibility::Public,
        access: PublicAccess::Read,
        assets_only: true,
        ..BASE
    },
    Situation {
        label: "anyone, asset public with access write",
        a: Visibility::Public,
        access: PublicAccess::Write,
        assets_only: true,
        ..BASE
    },
    Situation {
        label: "anyone, asset public with access none",
        a: Visibility::Public,
        access: PublicAccess::None,
        assets_only: true,
        ..BASE
    },
    Situation {
        label: "anyone, asset private with access write",
        access: PublicAccess::Write,
        assets_only: true,
        ..BASE
    },
    Situation {
        label: "anyone, workspace and project public",
        ws: Visibility::Public,
        p: Visibility::Public,
        ..BASE
    },
    Situation {
        label: "editor of another workspace",
        other_member: true,
        ..BASE
    },
    Situation {
        label: "anonymous: owner of the workspace created with it",
        owner: true,
        ..ANON
    },
    Situation {
        label: "anonymous: workspace owner-role member, workspace private",
        ws_role: Some(Role::Owner),
        ..ANON
    },
    Situation {
        label: "anonymous: workspace owner-role member, workspace public",
        ws_role: Some(Role::Owner),
        ws: Visibility::Public,
        ..ANON
    },
    Situation {
        label: "anonymous: workspace editor, workspace private",
        ws_role: Some(Role::Editor),
        ..ANON
    },
    Situation {
        label: "anonymous: workspace editor, workspace public",
        ws_role: Some(Role::Editor),
        ws: Visibility::Public,
        ..ANON
    },
    Situation {
        label: "anonymous: workspace viewer, workspace public",
        ws_role: Some(Role::Viewer),
        ws: Visibility::Public,
        ..ANON
    },
    Situation {
        label: "anonymous: project editor, project private",
        p_role: Some(Role::Editor),
        ..ANON
    },
    Situation {
        label: "anonymous: project editor, project public",
        p_role: Some(Role::Editor),
        p: Visibility::Public,
        ..ANON
    },
    Situation {
        label: "anonymous: read grant, asset private",
        grant: Some(Permission::Read),
        assets_only: true,
        ..ANON
    },
    Situation {
        label: "anonymous: write grant, asset public with access none",
        grant: Some(Permission::Write),
        a: Visibility::Public,
        assets_only: true,
        ..ANON
    },
    Situation {
        label: "anonymous: anyone, asset public with access write",
        a: Visibility::Public,
        access: PublicAccess::Write,
        assets_only: true,
        ..ANON
    },
    Situation {
        label: "workspace owner signed in with the provider's token",
        owner: true,
        authn: Authn::OidcToken,
        ..BASE
    },
    Situation {
        label: "workspace owner using the anonymous token from before sign-up",
        owner: true,
        authn: Authn::AnonymousToken,
        ..BASE
    },
    Situation {
        label: "anonymous owner merged into a registered user, with its old token",
        owner: true,
        merged: true,
        authn: Authn::AnonymousToken,
        ..ANON
    },
];

fn id(text: &str) -> Id {
    #[expect(clippy::expect_used, reason = "constant ids are valid")]
    Id::parse(text).expect("valid id")
}

fn user(name: &str, kind: UserKind, merged_into: Option<&str>) -> UserRecord {
    UserRecord {
        id: id(name),
        kind,
        email: None,
        name: None,
        merged_into: merged_into.map(id),
    }
}

impl Situation {
    /// A world of workspace `w` (and `w2`), project `p`, asset `a` where the
    /// principal `x` is in this situation.
    fn world(&self) -> World {
        let principal = user("x", self.kind, self.merged.then_some("registered"));
        let mut world = World {
            users: vec![
                principal,
                user("owner", UserKind::Registered, None),
                user("registered", UserKind::Registered, None),
            ],
            workspaces: vec![
                WorkspaceRecord {
                    id: id("w"),
                    owner: id(if self.owner { "x" } else { "owner" }),
                    visibility: self.ws,
                },
                WorkspaceRecord {
                    id: id("w2"),
                    owner: id("owner"),
                    visibility: Visibility::Private,
                },
            ],
            projects: vec![ProjectRecord {
                id: id("p"),
                workspace: id("w"),
                visibility: self.p,
            }],
            assets: vec![AssetRecord {
                id: id("a"),
                project: id("p"),
                visibility: self.a,
                public_access: self.access,
            }],
            ..World::default()
        };
        if let Some(role) = self.ws_role {
            world.memberships.push(MembershipRecord {
                user: id("x"),
                scope: Scope::Workspace,
                id: id("w"),
                role,
            });
        }
        if let Some(role) = self.p_role {
            world.memberships.push(MembershipRecord {
                user: id("x"),
                scope: Scope::Project,
                id: id("p"),
                role,
            });
        }
        if self.other_member {
            world.memberships.push(MembershipRecord {
                user: id("x"),
                scope: Scope::Workspace,
                id: id("w2"),
                role: Role::Editor,
            });
        }
        if let Some(permission) = self.grant {
            world.grants.push(GrantRecord {
                user: id("x"),
                asset: id("a"),
                permission,
            });
        }
        world
    }
}

/// One table: a resource type, its actions, and a row per situation.
pub struct Table {
    /// `Workspace`, `Project` or `Asset`.
    pub resource_type: &'static str,
    /// Column headings.
    pub actions: Vec<String>,
    /// (situation, one answer per action).
    pub rows: Vec<(&'static str, Vec<Answer>)>,
}

/// The whole matrix for one policy set.
pub struct Matrix {
    /// The policy set's version.
    pub version: String,
    /// One table per resource type.
    pub tables: Vec<Table>,
}

fn ordered_actions(engine: &PolicyEngine, ty: &str) -> Vec<String> {
    let mut actions: Vec<String> = engine
        .decision_actions()
        .filter(|a| {
            engine
                .decision_action(a)
                .is_some_and(|s| s.resources.iter().any(|r| r == ty))
        })
        .map(str::to_string)
        .collect();
    actions.sort_by_key(|a| {
        (
            ACTION_ORDER
                .iter()
                .position(|o| o == a)
                .unwrap_or(ACTION_ORDER.len()),
            a.clone(),
        )
    });
    actions
}

/// Evaluates every situation on every action of every resource type.
pub fn compute(engine: &PolicyEngine) -> Matrix {
    let mut tables = Vec::new();
    for ty in TYPES {
        let actions = ordered_actions(engine, ty);
        let resource_id = match ty {
            "Workspace" => "w",
            "Project" => "p",
            _ => "a",
        };
        let mut rows = Vec::new();
        for situation in SITUATIONS {
            if situation.assets_only && ty != "Asset" {
                continue;
            }
            let probes: Vec<Probe> = actions
                .iter()
                .map(|action| Probe {
                    source: "matrix".into(),
                    name: situation.label.into(),
                    raw: RawDecision {
                        principal: EntityRef {
                            ty: "User".into(),
                            id: "x".into(),
                        },
                        action: action.clone(),
                        resource: EntityRef {
                            ty: ty.into(),
                            id: resource_id.into(),
                        },
                        context: super::probe::invite_context(),
                        entities: None,
                        authn: situation.authn,
                    },
                })
                .collect();
            rows.push((situation.label, ask(engine, &situation.world(), &probes)));
        }
        tables.push(Table {
            resource_type: ty,
            actions,
            rows,
        });
    }
    Matrix {
        version: engine.version().to_string(),
        tables,
    }
}

fn cell(answer: &Answer) -> String {
    let reasons = answer.reasons();
    match answer {
        Answer::Invalid { .. } => "invalid".into(),
        _ if reasons.is_empty() => answer.word().into(),
        _ => format!("{} ({})", answer.word(), reasons.join(", ")),
    }
}

impl Matrix {
    /// The Markdown committed at `docs/permissions.md`. It carries no
    /// version, so it changes only when a decision does.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("# Permission matrix\n\n");
        out.push_str(
            "Generated by `warden matrix` from the policies in `policies/`: every cell is a \
             Cedar evaluation, never written by hand. Regenerate with \
             `cargo run -- matrix > docs/permissions.md`; a test fails when this file no longer \
             matches the policies.\n\n",
        );
        out.push_str(
            "Each row is a principal situation of CONTRACT §3 in a world where workspace `w` \
             (owned by another user unless the row says otherwise) holds project `p`, which \
             holds asset `a`; everything is private unless the row says public, and the \
             principal is named by an app (`authn` app) unless the row names a token, and \
             accepts invites bound to its own email. A cell is the decision with the `@id`s of the policies that determined it; a deny \
             with no `@id` means no permit applied.\n",
        );
        for table in &self.tables {
            let _ = write!(out, "\n## {}\n\n| principal |", table.resource_type);
            for action in &table.actions {
                let _ = write!(out, " {action} |");
            }
            out.push_str("\n|---|");
            for _ in &table.actions {
                out.push_str("---|");
            }
            out.push('\n');
            for (label, answers) in &table.rows {
                let _ = write!(out, "| {label} |");
                for answer in answers {
                    let _ = write!(out, " {} |", cell(answer));
                }
                out.push('\n');
            }
        }
        out
    }

    /// One self-contained HTML page (no scripts, no external resources).
    pub fn html(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Warden permission matrix</title><style>\
             body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
             table{border-collapse:collapse;margin-bottom:2em}\
             th,td{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}\
             th{background:#f3f3f3;text-align:left}\
             td.allow{background:#e3f6e3}td.deny{background:#fbe9e9}td.invalid{background:#eee}\
             td small{display:block;color:#555;font-family:monospace}\
             </style></head><body>\n<h1>Warden permission matrix</h1>\n",
        );
        let _ = writeln!(
            out,
            "<p>Policy set version <code>{}</code>. Every cell is a Cedar evaluation of the \
             loaded policies (generated by <code>warden matrix --format html</code>). Workspace \
             <code>w</code> holds project <code>p</code>, which holds asset <code>a</code>; \
             everything is private unless the row says public.</p>",
            escape(&self.version)
        );
        for table in &self.tables {
            let _ = write!(
                out,
                "<h2>{}</h2>\n<table><tr><th>principal</th>",
                escape(table.resource_type)
            );
            for action in &table.actions {
                let _ = write!(out, "<th>{}</th>", escape(action));
            }
            out.push_str("</tr>\n");
            for (label, answers) in &table.rows {
                let _ = write!(out, "<tr><th>{}</th>", escape(label));
                for answer in answers {
                    let _ = write!(
                        out,
                        "<td class=\"{}\">{}<small>{}</small></td>",
                        answer.word(),
                        answer.word(),
                        escape(&answer.reasons().join(", "))
                    );
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
        }
        out.push_str("</body></html>\n");
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
