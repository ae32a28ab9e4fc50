-- Each asset's workspace, kept by the database (issue 6): searches within a
-- workspace walk the index (workspace_id, id) in id order and stop after a
-- page, instead of joining and sorting every asset of the workspace per
-- page. No code writes the column: the triggers below derive it from the
-- asset's project when an asset is added or moved, and follow a project
-- moved to another workspace.
ALTER TABLE assets ADD COLUMN workspace_id TEXT;
UPDATE assets SET workspace_id = (SELECT workspace_id FROM projects WHERE projects.id = assets.project_id);
CREATE INDEX assets_workspace ON assets (workspace_id, id);

CREATE TRIGGER assets_workspace_on_insert AFTER INSERT ON assets
BEGIN
    UPDATE assets SET workspace_id = (SELECT workspace_id FROM projects WHERE id = NEW.project_id)
    WHERE id = NEW.id;
END;
CREATE TRIGGER assets_workspace_on_move AFTER UPDATE OF project_id ON assets
    WHEN OLD.project_id IS NOT NEW.project_id
BEGIN
    UPDATE assets SET workspace_id = (SELECT workspace_id FROM projects WHERE id = NEW.project_id)
    WHERE id = NEW.id;
END;
CREATE TRIGGER projects_workspace_on_move AFTER UPDATE OF workspace_id ON projects
    WHEN OLD.workspace_id IS NOT NEW.workspace_id
BEGIN
    UPDATE assets SET workspace_id = NEW.workspace_id WHERE project_id = NEW.id;
END;
