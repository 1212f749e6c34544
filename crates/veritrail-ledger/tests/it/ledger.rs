use std::collections::HashMap;
use std::convert::Infallible;

use serde_json::json;
use veritrail_ledger::checkpoint::{Checkpoint, open_checkpoint, sign_checkpoint};
use veritrail_ledger::hash::{Hash, leaf_hash};
use veritrail_ledger::jcs;
use veritrail_ledger::note::{NoteSigner, VerifierKey};
use veritrail_ledger::tree::{
    self, Frontier, MemoryTree, NodeSource, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
};

/// What a store keeps: leaf hashes and the perfect subtrees `Frontier::push` reports.
#[derive(Default)]
struct NodeTable {
    nodes: HashMap<(u32, u64), Hash>,
}

impl NodeSource for NodeTable {
    type Error = Infallible;
    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
        Ok(self.nodes[&(level, index)])
    }
}

struct Writer {
    frontier: Frontier,
    table: NodeTable,
}

impl Writer {
    fn append(&mut self, record: &serde_json::Value) -> Hash {
        let leaf = leaf_hash(jcs::canonicalize(record).unwrap().as_bytes());
        let seq = self.frontier.size();
        self.table.nodes.insert((0, seq), leaf);
        for node in self.frontier.push(leaf).unwrap() {
            self.table.nodes.insert((node.level, node.index), node.hash);
        }
        leaf
    }
}

fn record(seq: u64) -> serde_json::Value {
    json!({
        "seq": seq,
        "tenant": "acme",
        "received_at": "2026-01-15T14:32:11.234Z",
        "action": "data.updated",
        "actor": {"id": "user-123", "type": "user"},
        "metadata": {"tokens": 470, "cost": 0.0045},
    })
}

#[test]
fn write_checkpoint_prove_and_verify_offline() {
    let signer = NoteSigner::from_seed("veritrail.example", [11; 32]).unwrap();
    let published_key = signer.verifier_key().to_string();
    let mut writer = Writer { frontier: Frontier::new(), table: NodeTable::default() };

    let mut leaves = Vec::new();
    let mut checkpoints = Vec::new();
    for seq in 0..1000 {
        leaves.push(writer.append(&record(seq)));
        if [1, 7, 64, 500, 1000].contains(&writer.frontier.size()) {
            let checkpoint = Checkpoint::new("veritrail.example/acme", writer.frontier.size(), writer.frontier.root());
            checkpoints.push(sign_checkpoint(&checkpoint, &signer).unwrap());
        }
    }

    // After a restart the frontier is rebuilt from the stored subtrees.
    let restored = Frontier::from_source(writer.frontier.size(), &writer.table).unwrap();
    assert_eq!(restored, writer.frontier);

    // An auditor trusts only the published key.
    let trusted: VerifierKey = published_key.parse().unwrap();
    let opened: Vec<Checkpoint> =
        checkpoints.iter().map(|note| open_checkpoint(note, std::slice::from_ref(&trusted)).unwrap()).collect();

    for pair in opened.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let proof = consistency_proof(old.size, new.size, &writer.table).unwrap();
        verify_consistency(old.size, new.size, &proof, &old.root, &new.root).unwrap();
    }

    let latest = opened.last().unwrap();
    for seq in [0, 1, 499, 998, 999] {
        let proof = inclusion_proof(seq, latest.size, &writer.table).unwrap();
        let leaf = leaf_hash(jcs::canonicalize(&record(seq)).unwrap().as_bytes());
        verify_inclusion(&leaf, seq, latest.size, &proof, &latest.root).unwrap();
    }

    // An offline verifier recomputes everything from the exported records.
    let rebuilt = MemoryTree::from_leaves((0..latest.size).map(|seq| {
        let bytes = jcs::canonicalize(&record(seq)).unwrap();
        assert!(jcs::is_canonical(bytes.as_bytes()));
        leaf_hash(bytes.as_bytes())
    }));
    assert_eq!(rebuilt.root(), latest.root);
    assert_eq!(tree::root_at(64, &rebuilt).unwrap(), opened[2].root, "a past checkpoint is a prefix");
}

#[test]
fn a_rewritten_record_is_detected() {
    let mut leaves: Vec<Hash> =
        (0..10).map(|seq| leaf_hash(jcs::canonicalize(&record(seq)).unwrap().as_bytes())).collect();
    let honest = MemoryTree::from_leaves(leaves.iter().copied());
    let proof = inclusion_proof(3, 10, &honest).unwrap();

    let mut tampered = record(3);
    tampered["actor"]["id"] = json!("someone-else");
    leaves[3] = leaf_hash(jcs::canonicalize(&tampered).unwrap().as_bytes());
    assert!(verify_inclusion(&leaves[3], 3, 10, &proof, &honest.root()).is_err());
    assert_ne!(MemoryTree::from_leaves(leaves).root(), honest.root());
}
