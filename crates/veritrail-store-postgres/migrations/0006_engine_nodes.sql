-- Which nodes run rule engines (src/alerts.rs, AlertStore::engine_nodes), schema version 6.
-- Every node's engine writes its row about once a second; rows older than the engine's time to
-- live are of nodes gone, and deleted by the next node that looks. Each tenant's engine runs on
-- the live node its id ranks first for (rendezvous hashing), so that every tenant is evaluated
-- once, not once per node. Nothing in it is data: a migration between stores leaves it out.
CREATE TABLE engine_nodes (
    node    text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
