-- Ranking mode (issue #9): a labeler orders K responses of one item at once. One ranking is
-- stored per assignment, as submitted (tiers in order, unacceptable flags), never as expanded
-- pairs, so it can be re-expanded later with other options.

-- Responses shown per ranking assignment; NULL for pairwise projects.
ALTER TABLE projects ADD COLUMN k INTEGER CHECK (k IS NULL OR k BETWEEN 3 AND 9);

-- Ranking projects hand out items (not comparisons): overlap minus ranking assignments handed out.
ALTER TABLE items ADD COLUMN remaining INTEGER NOT NULL DEFAULT 0 CHECK (remaining >= 0);
CREATE INDEX items_open ON items (project_id, id) WHERE remaining > 0;

-- JSON array of `responses.idx` in the order the page shows them (randomised per assignment,
-- a random K-subset when the item has more than K responses). NULL for pairwise assignments.
ALTER TABLE assignments ADD COLUMN shown_json TEXT;
-- Never show one item twice to the same labeler in ranking mode.
CREATE UNIQUE INDEX assignments_item_user ON assignments (item_id, user_id)
    WHERE comparison_id IS NULL;

CREATE TABLE rankings (
    id            INTEGER PRIMARY KEY,
    assignment_id INTEGER NOT NULL REFERENCES assignments (id) ON DELETE CASCADE,
    -- Chosen by the client per submission: a retry is answered from the stored row.
    client_id     TEXT    NOT NULL UNIQUE,
    -- JSON array of tiers, best first; each tier an array of `responses.idx` with equal rank.
    tiers_json    TEXT    NOT NULL,
    -- JSON array of `responses.idx` flagged unacceptable (all in the last tiers).
    unacceptable_json TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL,
    undone_at     INTEGER
);
CREATE UNIQUE INDEX rankings_live ON rankings (assignment_id) WHERE undone_at IS NULL;

CREATE TRIGGER assignments_take_item AFTER INSERT ON assignments
WHEN NEW.comparison_id IS NULL
BEGIN
    UPDATE items SET remaining = remaining - 1 WHERE id = NEW.item_id;
END;

CREATE TRIGGER rankings_done AFTER INSERT ON rankings
WHEN NEW.undone_at IS NULL
BEGIN
    UPDATE assignments SET done = 1 WHERE id = NEW.assignment_id;
    INSERT INTO labeler_progress (user_id, project_id, labeled)
        SELECT user_id, project_id, 1 FROM assignments WHERE id = NEW.assignment_id
        ON CONFLICT (user_id, project_id) DO UPDATE SET labeled = labeled + 1;
END;

CREATE TRIGGER rankings_undo AFTER UPDATE OF undone_at ON rankings
WHEN OLD.undone_at IS NULL AND NEW.undone_at IS NOT NULL
BEGIN
    UPDATE assignments SET done = 0, reopened_at = NEW.undone_at WHERE id = NEW.assignment_id;
    UPDATE labeler_progress SET labeled = labeled - 1
        WHERE (user_id, project_id) = (SELECT user_id, project_id FROM assignments WHERE id = NEW.assignment_id);
END;
