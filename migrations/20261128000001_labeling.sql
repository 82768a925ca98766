-- Labeling UI schema (issue #3). Timestamps are unix milliseconds.
-- Ranking (issue #9) is planned to add `projects.mode = 'ranking'` and a `rankings` table keyed by
-- assignment; that is why labels hang off `assignments`, and assignments point at an item with an
-- optional comparison (NULL for a ranking assignment).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('labeler', 'admin')),
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie token, so a leaked database does not leak live sessions.
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE projects (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    -- Only 'pairwise' today; validated in the app so a later mode needs no table rebuild.
    mode       TEXT    NOT NULL DEFAULT 'pairwise',
    overlap    INTEGER NOT NULL DEFAULT 1 CHECK (overlap >= 1),
    -- Kept by import so progress needs no COUNT over the comparisons on every request.
    n_comparisons INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE items (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- JSON: a string, or an array of {"role","content"} messages.
    prompt_json TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX items_project ON items (project_id);

CREATE TABLE responses (
    id      INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    body    TEXT    NOT NULL,
    UNIQUE (item_id, idx)
);

-- One row per unordered response pair; `first`/`second` is the canonical (import) order.
CREATE TABLE comparisons (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    item_id    INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    first_id   INTEGER NOT NULL REFERENCES responses (id),
    second_id  INTEGER NOT NULL REFERENCES responses (id),
    -- overlap minus assignments handed out; the partial index keeps the queue scan to open work.
    remaining  INTEGER NOT NULL CHECK (remaining >= 0),
    UNIQUE (item_id, first_id, second_id)
);
CREATE INDEX comparisons_open ON comparisons (project_id, id) WHERE remaining > 0;

CREATE TABLE assignments (
    id            INTEGER PRIMARY KEY,
    project_id    INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    item_id       INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    comparison_id INTEGER REFERENCES comparisons (id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- 1 when the page showed `second` as A: the randomised order is recorded per assignment.
    swapped       INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    created_at    INTEGER NOT NULL,
    -- Bumped by undo so the undone comparison comes back first.
    reopened_at   INTEGER NOT NULL DEFAULT 0,
    -- 1 while a live (not undone) label exists; kept in step by submit/undo so the queue and
    -- progress queries never scan labels.
    done          INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    -- Never show one comparison twice to the same labeler.
    UNIQUE (comparison_id, user_id)
);
CREATE INDEX assignments_user ON assignments (user_id, project_id, done);

CREATE TABLE labels (
    id            INTEGER PRIMARY KEY,
    assignment_id INTEGER NOT NULL REFERENCES assignments (id) ON DELETE CASCADE,
    -- Chosen by the client per click: a retried submission hits this and is not counted twice.
    client_id     TEXT    NOT NULL UNIQUE,
    -- Canonical terms: 'first' / 'second' refer to comparisons.first_id / second_id.
    choice        TEXT    NOT NULL CHECK (choice IN ('first', 'second', 'tie', 'both_bad')),
    rationale     TEXT,
    created_at    INTEGER NOT NULL,
    -- Undo keeps the row (so its client id stays spent) and marks it dead.
    undone_at     INTEGER
);
CREATE UNIQUE INDEX labels_live ON labels (assignment_id) WHERE undone_at IS NULL;

-- Live labels per labeler and project, kept by the triggers below: progress is shown with every
-- comparison, and counting a labeler's assignments each time grows with their work.
CREATE TABLE labeler_progress (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    labeled    INTEGER NOT NULL DEFAULT 0 CHECK (labeled >= 0),
    PRIMARY KEY (user_id, project_id)
) WITHOUT ROWID;
CREATE INDEX labels_created ON labels (assignment_id, created_at);

-- The denormalised counters above (`comparisons.remaining`, `assignments.done`) are kept in step
-- by triggers, so that each labeling write is one statement: the single writer task is the
-- throughput bottleneck and every statement costs it a round trip to SQLite's thread.
CREATE TRIGGER assignments_take AFTER INSERT ON assignments
WHEN NEW.comparison_id IS NOT NULL
BEGIN
    UPDATE comparisons SET remaining = remaining - 1 WHERE id = NEW.comparison_id;
END;

CREATE TRIGGER labels_done AFTER INSERT ON labels
WHEN NEW.undone_at IS NULL
BEGIN
    UPDATE assignments SET done = 1 WHERE id = NEW.assignment_id;
    INSERT INTO labeler_progress (user_id, project_id, labeled)
        SELECT user_id, project_id, 1 FROM assignments WHERE id = NEW.assignment_id
        ON CONFLICT (user_id, project_id) DO UPDATE SET labeled = labeled + 1;
END;

CREATE TRIGGER labels_undo AFTER UPDATE OF undone_at ON labels
WHEN OLD.undone_at IS NULL AND NEW.undone_at IS NOT NULL
BEGIN
    UPDATE assignments SET done = 0, reopened_at = NEW.undone_at WHERE id = NEW.assignment_id;
    UPDATE labeler_progress SET labeled = labeled - 1
        WHERE (user_id, project_id) = (SELECT user_id, project_id FROM assignments WHERE id = NEW.assignment_id);
END;
