use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::hash::{empty_root, leaf_hash, node_hash};

// ---------------------------------------------------------------------------------------
// Known answers: transparency-dev/merkle testonly/constants.go and proof/verify_test.go.
// ---------------------------------------------------------------------------------------

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

fn kat_leaf_inputs() -> Vec<Vec<u8>> {
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
        .iter()
        .map(|hex| (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect())
        .collect()
}

fn kat_tree() -> MemoryTree {
    MemoryTree::from_leaves(kat_leaf_inputs().iter().map(|data| leaf_hash(data)))
}

/// Root hashes of the trees of sizes 0..=8 over the KAT leaves.
fn kat_roots() -> Vec<Hash> {
    vec![
        empty_root(),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
        h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
        h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ]
}

/// Perfect subtree hashes of the KAT tree, `[level][index]`.
fn kat_node_hashes() -> Vec<Vec<Hash>> {
    vec![
        vec![
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
            h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
        ],
        vec![
            h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        ],
        vec![
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
        vec![h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
    ]
}

#[test]
fn kat_roots_from_frontier_memory_tree_and_root_at() {
    let roots = kat_roots();
    let tree = kat_tree();
    let mut frontier = Frontier::new();
    assert_eq!(frontier.root(), roots[0]);
    assert_eq!(MemoryTree::new().root(), roots[0]);
    for (size, data) in kat_leaf_inputs().iter().enumerate() {
        frontier.push(leaf_hash(data)).unwrap();
        let size = size as u64 + 1;
        assert_eq!(frontier.size(), size);
        assert_eq!(frontier.root(), roots[size as usize], "frontier root at {size}");
        assert_eq!(root_at(size, &tree).unwrap(), roots[size as usize], "root_at {size}");
    }
    assert_eq!(tree.root(), roots[8]);
    assert_eq!(tree.root().to_hex(), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
}

#[test]
fn kat_node_hashes_are_reported_by_push_and_served_by_memory_tree() {
    let nodes = kat_node_hashes();
    let tree = kat_tree();
    let mut frontier = Frontier::new();
    let mut reported = Vec::new();
    for data in kat_leaf_inputs() {
        reported.extend(frontier.push(leaf_hash(&data)).unwrap());
    }
    let mut expected = Vec::new();
    for (level, row) in nodes.iter().enumerate() {
        for (index, hash) in row.iter().enumerate() {
            assert_eq!(tree.perfect_subtree(level as u32, index as u64), Ok(*hash));
            if level > 0 {
                expected.push(CompletedNode { level: level as u32, index: index as u64, hash: *hash });
            }
        }
    }
    reported.sort_by_key(|node| (node.level, node.index));
    assert_eq!(reported, expected);
}

#[test]
fn kat_compact_ranges() {
    // testonly/constants.go CompactTrees(): the frontier after each push.
    let n = kat_node_hashes();
    let expected: Vec<Vec<Hash>> = vec![
        vec![],
        vec![n[0][0]],
        vec![n[1][0]],
        vec![n[1][0], n[0][2]],
        vec![n[2][0]],
        vec![n[2][0], n[0][4]],
        vec![n[2][0], n[1][2]],
        vec![n[2][0], n[1][2], n[0][6]],
        vec![n[3][0]],
    ];
    let tree = kat_tree();
    let mut frontier = Frontier::new();
    for (size, want) in expected.iter().enumerate() {
        assert_eq!(frontier.subtrees(), want.as_slice(), "size {size}");
        assert_eq!(Frontier::from_source(size as u64, &tree).unwrap(), frontier, "from_source {size}");
        if let Some(leaf) = tree.leaf(size as u64) {
            frontier.push(leaf).unwrap();
        }
    }
}

/// verify_test.go `inclusionProofs` (there with 1-based leaf numbers).
fn kat_inclusion_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
    let n = kat_node_hashes();
    vec![
        (0, 1, vec![]),
        (0, 8, vec![n[0][1], n[1][1], n[2][1]]),
        (5, 8, vec![n[0][4], n[1][3], n[2][0]]),
        (2, 3, vec![n[1][0]]),
        (1, 5, vec![n[0][0], n[1][1], n[0][4]]),
    ]
}

/// verify_test.go `consistencyProofs`.
fn kat_consistency_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
    let n = kat_node_hashes();
    vec![
        (1, 1, vec![]),
        (1, 8, vec![n[0][1], n[1][1], n[2][1]]),
        (6, 8, vec![n[1][2], n[1][3], n[2][0]]),
        (2, 5, vec![n[1][1], n[0][4]]),
        (6, 7, vec![n[1][2], n[0][6], n[2][0]]),
    ]
}

#[test]
fn kat_inclusion_proofs_are_generated_and_verify() {
    let tree = kat_tree();
    let roots = kat_roots();
    for (index, size, want) in kat_inclusion_proofs() {
        let proof = inclusion_proof(index, size, &tree).unwrap();
        assert_eq!(proof, want, "inclusion proof of {index} in {size}");
        let leaf = tree.leaf(index).unwrap();
        verify_inclusion(&leaf, index, size, &proof, &roots[size as usize]).unwrap();
        assert_inclusion_mutations_rejected(&tree, index, size, &proof);
    }
}

#[test]
fn kat_consistency_proofs_are_generated_and_verify() {
    let tree = kat_tree();
    let roots = kat_roots();
    for (first, second, want) in kat_consistency_proofs() {
        let proof = consistency_proof(first, second, &tree).unwrap();
        assert_eq!(proof, want, "consistency proof {first} -> {second}");
        verify_consistency(first, second, &proof, &roots[first as usize], &roots[second as usize]).unwrap();
        assert_consistency_mutations_rejected(&tree, first, second, &proof);
    }
}

#[test]
fn inclusion_edge_cases() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let empty = empty_root();
    for (index, size) in [(0, 0), (1, 0), (2, 1), (1, 1)] {
        assert!(verify_inclusion(&some, index, size, &[], &some).is_err());
        assert!(verify_inclusion(&some, index, size, &[], &empty).is_err());
    }
    // A one-leaf tree: the root is the leaf hash and the proof is empty.
    let leaf = leaf_hash(b"data");
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &leaf), Ok(()));
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &some), Err(VerifyError::RootMismatch));
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf), Err(VerifyError::ProofTooLong));
    assert_eq!(verify_inclusion(&leaf, 1, 1, &[], &leaf), Err(VerifyError::IndexOutOfRange { index: 1, size: 1 }));
    assert!(matches!(inclusion_proof(3, 3, &kat_tree()), Err(ProofError::IndexOutOfRange { index: 3, size: 3 })));
    assert!(matches!(inclusion_proof(3, 9, &kat_tree()), Err(ProofError::Source(MissingNode { .. }))));
}

#[test]
fn consistency_edge_cases() {
    // verify_test.go TestVerifyConsistency.
    let root1 = leaf_hash(b"don't care 1");
    let root2 = leaf_hash(b"don't care 2");
    let empty = empty_root();
    let cases: [(u64, u64, Hash, Hash, Vec<Hash>, bool); 13] = [
        (0, 0, root1, root2, vec![], false),
        (1, 1, root1, root2, vec![], false),
        // Always consistent.
        (0, 0, root1, root1, vec![], true),
        (0, 1, root1, root2, vec![], true),
        (1, 1, root2, root2, vec![], true),
        // Time travel to the past.
        (1, 0, root1, root2, vec![], false),
        (2, 1, root1, root2, vec![], false),
        // Empty proof.
        (1, 2, root1, root2, vec![], false),
        // Roots differ.
        (0, 0, empty, root2, vec![], false),
        (1, 1, empty, root2, vec![], false),
        // Roots match but the proof is not empty.
        (0, 0, empty, empty, vec![empty], false),
        (0, 1, empty, empty, vec![empty], false),
        (1, 1, empty, empty, vec![empty], false),
    ];
    for (first, second, first_root, second_root, proof, ok) in cases {
        let result = verify_consistency(first, second, &proof, &first_root, &second_root);
        assert_eq!(result.is_ok(), ok, "{first} -> {second}: {result:?}");
    }
    let tree = kat_tree();
    assert_eq!(consistency_proof(0, 8, &tree).unwrap(), vec![]);
    assert_eq!(consistency_proof(8, 8, &tree).unwrap(), vec![]);
    assert!(matches!(consistency_proof(5, 4, &tree), Err(ProofError::SizeOrder { first: 5, second: 4 })));
    assert!(matches!(consistency_proof(5, 9, &tree), Err(ProofError::Source(MissingNode { .. }))));
}

// ---------------------------------------------------------------------------------------
// Frontier.
// ---------------------------------------------------------------------------------------

#[test]
fn subtrees_for_size_lists_one_subtree_per_bit() {
    assert_eq!(subtrees_for_size(0), vec![]);
    assert_eq!(subtrees_for_size(1), vec![(0, 0)]);
    assert_eq!(subtrees_for_size(6), vec![(2, 0), (1, 2)]);
    assert_eq!(subtrees_for_size(13), vec![(3, 0), (2, 2), (0, 12)]);
    assert_eq!(subtrees_for_size(u64::MAX).len(), 64);
    assert_eq!(subtrees_for_size(u64::MAX)[63], (0, u64::MAX - 1));
}

#[test]
fn from_subtrees_checks_the_count() {
    assert_eq!(
        Frontier::from_subtrees(6, vec![empty_root()]),
        Err(FrontierError::SubtreeCount { size: 6, expected: 2, actual: 1 })
    );
    assert_eq!(Frontier::from_subtrees(0, vec![]), Ok(Frontier::new()));
}

#[test]
fn a_full_frontier_refuses_more_leaves() {
    let mut frontier = Frontier::from_subtrees(u64::MAX, vec![empty_root(); 64]).unwrap();
    assert_eq!(frontier.push(empty_root()), Err(FrontierError::Full));
    assert_eq!(frontier.size(), u64::MAX);

    // The last possible push completes 63 subtrees without overflowing.
    let mut frontier = Frontier::from_subtrees(u64::MAX - 1, vec![empty_root(); 63]).unwrap();
    assert!(frontier.push(empty_root()).unwrap().is_empty());
    let mut frontier = Frontier::from_subtrees((1 << 63) - 1, vec![empty_root(); 63]).unwrap();
    let completed = frontier.push(empty_root()).unwrap();
    assert_eq!(completed.len(), 63);
    assert_eq!(completed[62].level, 63);
    assert_eq!(completed[62].index, 0);
    assert_eq!(frontier.subtrees().len(), 1);
}

#[test]
fn push_reports_exactly_the_perfect_subtrees_it_completes() {
    let mut frontier = Frontier::new();
    let mut tree = MemoryTree::new();
    for i in 0..300u64 {
        let leaf = leaf_hash(&i.to_be_bytes());
        let completed = frontier.push(leaf).unwrap();
        tree.push(leaf);
        let size = i + 1;
        assert_eq!(completed.len() as u32, i.trailing_ones());
        for (n, node) in completed.iter().enumerate() {
            assert_eq!(node.level as usize, n + 1);
            // Completed means: its last leaf is the one just pushed.
            assert_eq!((node.index + 1) << node.level, size);
            assert_eq!(tree.perfect_subtree(node.level, node.index), Ok(node.hash));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The RFC 6962 definitions, literally, as the reference for the fast code.
// ---------------------------------------------------------------------------------------

fn naive_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
        }
    }
}

fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        let mut path = naive_path(m, &leaves[..k]);
        path.push(naive_mth(&leaves[k..]));
        path
    } else {
        let mut path = naive_path(m - k, &leaves[k..]);
        path.push(naive_mth(&leaves[..k]));
        path
    }
}

fn naive_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { vec![] } else { vec![naive_mth(leaves)] };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut proof = subproof(m, &leaves[..k], b);
            proof.push(naive_mth(&leaves[k..]));
            proof
        } else {
            let mut proof = subproof(m - k, &leaves[k..], false);
            proof.push(naive_mth(&leaves[..k]));
            proof
        }
    }
    if m == 0 || m == leaves.len() {
        return vec![];
    }
    subproof(m, leaves, true)
}

/// A node source that counts its reads.
struct Counting<'a> {
    tree: &'a MemoryTree,
    reads: Cell<u32>,
}

impl NodeSource for Counting<'_> {
    type Error = MissingNode;
    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.reads.set(self.reads.get() + 1);
        self.tree.perfect_subtree(level, index)
    }
}

/// Twice the tree height, plus one: the read budget of one proof.
fn read_budget(size: u64) -> u32 {
    2 * (u64::BITS - size.leading_zeros()) + 1
}

const MAX_SIZE: u64 = 300;

fn big_tree() -> (MemoryTree, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..MAX_SIZE).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    (MemoryTree::from_leaves(leaves.iter().copied()), leaves)
}

/// Indexes to try in a tree of `size`: the edges, the middle, and around powers of two.
fn sample_indexes(size: u64) -> Vec<u64> {
    let mut indexes = vec![0, 1, size / 2, size.saturating_sub(2), size - 1];
    let mut p = 1;
    while p < size {
        indexes.extend([p - 1, p, p + 1]);
        p *= 2;
    }
    indexes.retain(|&i| i < size);
    indexes.sort_unstable();
    indexes.dedup();
    indexes
}

#[test]
fn proofs_match_the_rfc_definitions_for_every_size() {
    let (tree, leaves) = big_tree();
    for size in 0..=MAX_SIZE {
        let prefix = &leaves[..size as usize];
        let root = naive_mth(prefix);
        assert_eq!(root_at(size, &tree).unwrap(), root, "root at {size}");
        let frontier = Frontier::from_source(size, &tree).unwrap();
        assert_eq!(frontier.root(), root, "frontier root at {size}");
        assert_eq!(Frontier::from_subtrees(size, frontier.subtrees().to_vec()).unwrap(), frontier);
        if size == 0 {
            continue;
        }
        for index in sample_indexes(size) {
            let counting = Counting { tree: &tree, reads: Cell::new(0) };
            let proof = inclusion_proof(index, size, &counting).unwrap();
            assert_eq!(proof, naive_path(index as usize, prefix), "PATH({index}, {size})");
            assert!(counting.reads.get() <= read_budget(size), "reads for PATH");

            let counting = Counting { tree: &tree, reads: Cell::new(0) };
            let proof = consistency_proof(index, size, &counting).unwrap();
            assert_eq!(proof, naive_proof(index as usize, prefix), "PROOF({index}, {size})");
            assert!(counting.reads.get() <= read_budget(size), "reads for PROOF");
        }
    }
}

#[test]
fn proofs_verify_and_mutations_are_rejected_for_every_size() {
    let (tree, _) = big_tree();
    for size in 1..=MAX_SIZE {
        for index in sample_indexes(size) {
            let proof = inclusion_proof(index, size, &tree).unwrap();
            let root = root_at(size, &tree).unwrap();
            let leaf = tree.leaf(index).unwrap();
            assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
            assert_inclusion_mutations_rejected(&tree, index, size, &proof);

            let first = index;
            let proof = consistency_proof(first, size, &tree).unwrap();
            let first_root = root_at(first, &tree).unwrap();
            assert_eq!(verify_consistency(first, size, &proof, &first_root, &root), Ok(()));
            assert_consistency_mutations_rejected(&tree, first, size, &proof);
        }
    }
}

/// Every way of tampering with a valid inclusion proof must be rejected.
fn assert_inclusion_mutations_rejected(tree: &MemoryTree, index: u64, size: u64, proof: &[Hash]) {
    let root_of = |size: u64| root_at(size, tree).unwrap();
    let leaf = tree.leaf(index).unwrap();
    let root = root_of(size);
    let other = leaf_hash(b"not in the tree");
    let reject = |what: &str, leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash| {
        assert!(
            verify_inclusion(leaf, index, size, proof, root).is_err(),
            "inclusion of {index} in {size} accepted with {what}"
        );
    };

    for i in 0..proof.len() {
        for bit in [0, 3, 255] {
            let mut bad = proof.to_vec();
            bad[i].0[bit / 8] ^= 1 << (bit % 8);
            reject("a flipped bit", &leaf, index, size, &bad, &root);
        }
    }
    for wrong_index in [index.wrapping_sub(1), index + 1, index ^ 2, size, u64::MAX] {
        if wrong_index != index {
            reject("a wrong index", &leaf, wrong_index, size, proof, &root);
        }
    }
    for wrong_size in [size - 1, size + 1, size * 2, size / 2] {
        if wrong_size != size && wrong_size <= tree.size() {
            // Against the root of that size, as a forged checkpoint would claim.
            let wrong_root = root_of(wrong_size);
            reject("a wrong size", &leaf, index, wrong_size, proof, &wrong_root);
        }
    }
    if !proof.is_empty() {
        reject("a truncated proof", &leaf, index, size, &proof[..proof.len() - 1], &root);
        reject("a beheaded proof", &leaf, index, size, &proof[1..], &root);
    }
    for extra in [other, root, leaf] {
        let mut longer = proof.to_vec();
        longer.push(extra);
        reject("an extended proof", &leaf, index, size, &longer, &root);
        let mut longer = vec![extra];
        longer.extend_from_slice(proof);
        reject("a prepended hash", &leaf, index, size, &longer, &root);
    }
    for i in 1..proof.len() {
        if proof[i - 1] != proof[i] {
            let mut reordered = proof.to_vec();
            reordered.swap(i - 1, i);
            reject("reordered hashes", &leaf, index, size, &reordered, &root);
        }
    }
    for wrong_root in [other, empty_root(), root_of(size - 1)] {
        reject("a wrong root", &leaf, index, size, proof, &wrong_root);
    }
    reject("a wrong leaf", &other, index, size, proof, &root);
}

/// Every way of tampering with a valid consistency proof must be rejected.
fn assert_consistency_mutations_rejected(tree: &MemoryTree, first: u64, second: u64, proof: &[Hash]) {
    let root_of = |size: u64| root_at(size, tree).unwrap();
    let (first_root, second_root) = (root_of(first), root_of(second));
    let other = leaf_hash(b"not in the tree");
    let reject = |what: &str, first: u64, second: u64, proof: &[Hash], r1: &Hash, r2: &Hash| {
        assert!(
            verify_consistency(first, second, proof, r1, r2).is_err(),
            "consistency {first} -> {second} accepted with {what}"
        );
    };

    for i in 0..proof.len() {
        for bit in [0, 4, 255] {
            let mut bad = proof.to_vec();
            bad[i].0[bit / 8] ^= 1 << (bit % 8);
            reject("a flipped bit", first, second, &bad, &first_root, &second_root);
        }
    }
    if !proof.is_empty() {
        // With the roots of the claimed sizes, as forged checkpoints would give.
        for wrong_first in [first - 1, first + 1, first ^ 2] {
            if wrong_first != first && wrong_first <= tree.size() {
                let r1 = root_of(wrong_first);
                reject("a wrong first size", wrong_first, second, proof, &r1, &second_root);
            }
        }
        for wrong_second in [second - 1, second + 1, second * 2, second / 2] {
            if wrong_second != second && wrong_second <= tree.size() {
                let r2 = root_of(wrong_second);
                reject("a wrong second size", first, wrong_second, proof, &first_root, &r2);
            }
        }
        reject("an empty proof", first, second, &[], &first_root, &second_root);
        let shorter = &proof[..proof.len() - 1];
        reject("a truncated proof", first, second, shorter, &first_root, &second_root);
        reject("a beheaded proof", first, second, &proof[1..], &first_root, &second_root);
        reject("swapped roots", first, second, proof, &second_root, &first_root);
        reject("a wrong first root", first, second, proof, &other, &second_root);
    }
    for extra in [other, first_root, second_root] {
        let mut longer = proof.to_vec();
        longer.push(extra);
        reject("an extended proof", first, second, &longer, &first_root, &second_root);
        let mut longer = vec![extra];
        longer.extend_from_slice(proof);
        reject("a prepended hash", first, second, &longer, &first_root, &second_root);
    }
    for i in 1..proof.len() {
        if proof[i - 1] != proof[i] {
            let mut reordered = proof.to_vec();
            reordered.swap(i - 1, i);
            reject("reordered hashes", first, second, &reordered, &first_root, &second_root);
        }
    }
    if first != 0 {
        reject("a wrong second root", first, second, proof, &first_root, &other);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_proofs_verify_and_reject_tampering(
        size in 1..=MAX_SIZE,
        index_seed in any::<u64>(),
        first_seed in any::<u64>(),
    ) {
        let (tree, _) = big_tree();
        let index = index_seed % size;
        let proof = inclusion_proof(index, size, &tree).unwrap();
        let root = root_at(size, &tree).unwrap();
        prop_assert_eq!(
            verify_inclusion(&tree.leaf(index).unwrap(), index, size, &proof, &root),
            Ok(())
        );
        assert_inclusion_mutations_rejected(&tree, index, size, &proof);

        let first = first_seed % (size + 1);
        let proof = consistency_proof(first, size, &tree).unwrap();
        let first_root = root_at(first, &tree).unwrap();
        prop_assert_eq!(verify_consistency(first, size, &proof, &first_root, &root), Ok(()));
        assert_consistency_mutations_rejected(&tree, first, size, &proof);
    }

    #[test]
    fn frontier_root_matches_the_rfc_definition(
        leaves in proptest::collection::vec(any::<[u8; 32]>().prop_map(Hash), 0..300),
    ) {
        let mut frontier = Frontier::new();
        for leaf in &leaves {
            frontier.push(*leaf).unwrap();
        }
        prop_assert_eq!(frontier.root(), naive_mth(&leaves));
        let restored =
            Frontier::from_subtrees(frontier.size(), frontier.subtrees().to_vec()).unwrap();
        prop_assert_eq!(&restored, &frontier);
        prop_assert_eq!(MemoryTree::from_leaves(leaves.iter().copied()).root(), frontier.root());
    }

    #[test]
    fn verifiers_never_panic(
        index in any::<u64>(),
        size in any::<u64>(),
        second in any::<u64>(),
        proof in proptest::collection::vec(any::<[u8; 32]>().prop_map(Hash), 0..70),
    ) {
        let root = empty_root();
        let _ = verify_inclusion(&root, index, size, &proof, &root);
        let _ = verify_consistency(size, second, &proof, &root, &root);
        let _ = verify_consistency(size.min(second), size.max(second), &proof, &root, &root);
    }
}
