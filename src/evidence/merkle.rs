//! The journal as an RFC 6962 (RFC 9162 §2.1) Merkle tree.
//!
//! The hash chain orders the records and catches local damage; the Merkle tree over the
//! same records lets a third party check, with a few dozen hashes, that one record is in
//! the log ([`inclusion_proof`]) and that a later log extends an earlier one
//! ([`consistency_proof`]), against a root a key signed (see [`super::checkpoint`]).
//!
//! Leaf `i` (0-based) is the record with `seq = i + 1`; its data `d` is the 32 bytes of the
//! record's `hash` (hex-decoded). Leaf hash `SHA-256(0x00 ‖ d)`, node `SHA-256(0x01 ‖ l ‖ r)`,
//! a tree of `n > 1` leaves split at the largest power of two below `n`; the empty tree's
//! root is `SHA-256("")`.
//!
//! [`Frontier`] keeps a growing tree's right edge (one hash per set bit of the size), so an
//! append costs O(1) amortized hashes and a root O(log n). [`Tree`] keeps every complete
//! subtree's hash (about 2n hashes) for serving proofs of any leaf at any size in
//! O(log² n) hashes.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of a journal record: its `hash` field (64 lowercase hex digits) decoded.
pub fn record_leaf(record_hash: &str) -> Option<Hash> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(record_hash, &mut d).ok()?;
    Some(leaf_hash(&d))
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A growing tree's right edge: the roots of its perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the highest bit down.
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut size = self.size;
        // Merge equal-sized peaks: one per trailing set bit of the old size.
        while size & 1 == 1 {
            let left = self.peaks.pop().unwrap_or(carry);
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.peaks.push(carry);
        self.size += 1;
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        match peaks.next() {
            None => empty_root(),
            Some(last) => peaks.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// Every complete subtree's hash of a tree of leaves, for proofs at any size up to
/// [`Tree::size`].
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[k][i]` = hash of leaves `[i·2^k, (i+1)·2^k)`, for every complete such range.
    levels: Vec<Vec<Hash>>,
}

/// Why a proof was not served or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {asked} is larger than the log ({size})")]
    SizeOutOfRange { asked: u64, size: u64 },
    #[error("a consistency proof needs 0 < old size ({old}) <= new size ({new})")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            levels: vec![Vec::new()],
        }
    }

    /// A tree of these leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Tree {
        let mut t = Tree::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    /// Appends a leaf hash, completing every subtree it closes.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        while self.levels[k].len() % 2 == 0 {
            let n = self.levels[k].len();
            let h = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(h);
            k += 1;
        }
    }

    /// MTH of leaves `[start, start + len)`, where the recursion of RFC 6962 only ever asks
    /// for ranges whose perfect left parts are aligned.
    fn range_hash(&self, start: u64, len: u64) -> Hash {
        match len {
            0 => empty_root(),
            1 => self.levels[0][start as usize],
            _ if len.is_power_of_two() && start % len == 0 => {
                let k = len.trailing_zeros() as usize;
                self.levels[k][(start >> k) as usize]
            }
            _ => {
                let k = split(len);
                node_hash(
                    &self.range_hash(start, k),
                    &self.range_hash(start + k, len - k),
                )
            }
        }
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.range_hash(0, size))
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOutOfRange {
                asked: size,
                size: self.size(),
            });
        }
        Ok(())
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962
    /// §2.1.1 PATH), leaf side first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Ok(path)
    }

    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.range_hash(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.range_hash(start, k));
        }
    }

    /// The proof that the tree of the first `old` leaves is a prefix of the tree of the
    /// first `new` (RFC 6962 §2.1.2 PROOF).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
        if old == 0 || old > new {
            return Err(ProofError::BadSizes { old, new });
        }
        let mut out = Vec::new();
        self.subproof(old, 0, new, true, &mut out);
        Ok(out)
    }

    fn subproof(&self, m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.range_hash(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, whole, out);
            out.push(self.range_hash(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.range_hash(start, k));
        }
    }
}

/// Checks an audit path (RFC 9162 §2.1.3.2): leaf `index` with hash `leaf` is in the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The Certificate Transparency reference leaves (RFC 6962 test data).
    fn ct_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| leaf_hash(&hex::decode(x).unwrap()))
        .collect()
    }

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_rfc_6962_reference() {
        let leaves = ct_leaves();
        let tree = Tree::from_leaves(leaves.clone());
        let mut f = Frontier::new();
        assert_eq!(hex::encode(f.root()), ROOTS[0]);
        for n in 1..=8 {
            f.push(leaves[n - 1]);
            assert_eq!(hex::encode(f.root()), ROOTS[n], "frontier, size {n}");
            assert_eq!(
                hex::encode(tree.root(n as u64).unwrap()),
                ROOTS[n],
                "tree, size {n}"
            );
        }
    }

    #[test]
    fn proofs_match_the_rfc_6962_reference() {
        let tree = Tree::from_leaves(ct_leaves());
        // (leaf index, tree size, path)
        let inclusion: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in inclusion {
            let got = tree.inclusion_proof(index, size).unwrap();
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(got, want, "inclusion of {index} in {size}");
            let root = h(ROOTS[size as usize]);
            let leaf = tree.leaf(index).unwrap();
            verify_inclusion(index, size, &leaf, &got, &root).unwrap();
            assert!(verify_inclusion(index, size, &leaf, &got, &h(ROOTS[0])).is_err());
        }
        let consistency: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in consistency {
            let got = tree.consistency_proof(old, new).unwrap();
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(got, want, "consistency {old} -> {new}");
            let (a, b) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            verify_consistency(old, new, &a, &b, &got).unwrap();
            if old != new {
                assert!(verify_consistency(old, new, &b, &a, &got).is_err());
            }
        }
    }

    /// The recursive definition of MTH, as the RFC writes it, over a slice.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn every_proof_of_every_small_tree_verifies_and_a_changed_leaf_fails() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tree = Tree::from_leaves(leaves.clone());
        let mut f = Frontier::new();
        for n in 1..=70u64 {
            f.push(leaves[n as usize - 1]);
            let root = mth(&leaves[..n as usize]);
            assert_eq!(tree.root(n).unwrap(), root, "size {n}");
            assert_eq!(f.root(), root, "frontier size {n}");
            for i in 0..n {
                let p = tree.inclusion_proof(i, n).unwrap();
                verify_inclusion(i, n, &leaves[i as usize], &p, &root).unwrap();
                let other = leaf_hash(b"not this record");
                assert_eq!(
                    verify_inclusion(i, n, &other, &p, &root),
                    Err(ProofError::RootMismatch)
                );
                if n > 1 {
                    // The same path claimed for another index fails.
                    let j = (i + 1) % n;
                    assert!(verify_inclusion(j, n, &leaves[i as usize], &p, &root).is_err());
                }
            }
            for m in 1..=n {
                let p = tree.consistency_proof(m, n).unwrap();
                let old = mth(&leaves[..m as usize]);
                verify_consistency(m, n, &old, &root, &p).unwrap();
                let mut forked = leaves[..m as usize].to_vec();
                forked[0] = leaf_hash(b"rewritten");
                if m < n {
                    assert!(verify_consistency(m, n, &mth(&forked), &root, &p).is_err());
                }
            }
        }
    }
}
