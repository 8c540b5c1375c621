//! Tensor-name globs (`layerBitWidths`, `sensitiveLayerPatterns`, the modality defaults).

/// Wildcard match over the whole name: `*` matches any run (dots included), `?` one character.
/// Iterative with single backtrack point, so it runs in O(len(pattern)·len(name)) worst case.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        assert!(!glob_match("*norm*", "encoder.layer.0.LayerNorm.weight"));
        assert!(glob_match("*Norm*", "encoder.layer.0.LayerNorm.weight"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("down_blocks.*.weight", "down_blocks.0.resnets.1.conv1.weight"));
        assert!(!glob_match("down_blocks.*.bias", "down_blocks.0.conv.weight"));
        // pathological pattern stays fast
        let name = "a".repeat(5000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(50)), &name));
    }
}
