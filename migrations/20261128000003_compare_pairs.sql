-- Blind evaluation (`rudder compare --to-labeling`, compare/src/blind.rs): which model wrote
-- which response of an imported two-response item. `first_model` is the base (response 0).
-- The labeling app itself never reads it. IF NOT EXISTS: databases used by `rudder compare`
-- before this migration already have the table, which it then created at run time.
CREATE TABLE IF NOT EXISTS compare_pairs (
    item_id      INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    grp          TEXT NOT NULL,
    first_model  TEXT NOT NULL,
    second_model TEXT NOT NULL
);
