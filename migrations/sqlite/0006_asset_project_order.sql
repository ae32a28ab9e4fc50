-- Assets by project in id order (issue 6): a search over the assets of the
-- projects a user is a member of reads one page per project from
-- (project_id, id) and stops, instead of walking every asset after the
-- cursor in id order to find the project's (20,000 rows read for a page
-- of 20 in the benchmark world). The new index also serves every lookup
-- the old one on (project_id) alone did.
CREATE INDEX assets_project_id ON assets (project_id, id);
DROP INDEX assets_project;
