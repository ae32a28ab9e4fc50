-- Members and grantees of one workspace, project or asset in user order
-- (issue 6): subject search ("who may edit this?") reads one page of each
-- relation after the cursor from these indexes and stops, instead of
-- reading every member of the workspace on every page. They also make the
-- fact load's membership and grant probes exact on both columns. Each
-- replaces the index on the scope alone, whose lookups it serves too.
CREATE INDEX workspace_members_workspace_user ON workspace_members (workspace_id, user_id);
DROP INDEX workspace_members_workspace;
CREATE INDEX project_members_project_user ON project_members (project_id, user_id);
DROP INDEX project_members_project;
CREATE INDEX asset_grants_asset_user ON asset_grants (asset_id, user_id);
DROP INDEX asset_grants_asset;
