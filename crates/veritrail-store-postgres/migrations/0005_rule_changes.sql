-- Rule changes reach every node (src/alerts.rs, AlertStore::rule_change_counts), schema
-- version 5: how many times each tenant's rules changed, bumped in the transaction of every
-- rule write (install, create, update, delete). Each node's rule engine reads the whole table
-- every second and reloads the rules of the tenants whose count moved. No row: count 0 (rules
-- stored before this migration need none: only later changes must move the count).
CREATE TABLE rule_changes (
    tenant  text PRIMARY KEY,
    changes bigint NOT NULL CHECK (changes > 0)
);
