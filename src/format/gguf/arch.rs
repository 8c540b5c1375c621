//! `general.architecture` for a diffusion checkpoint, decided from tensor names the way the
//! loaders that read these files decide it (ComfyUI-GGUF, stable-diffusion.cpp): each
//! architecture lists sets of names, and it is chosen when every name of one set is present.
//! Checked in order, so the more specific layouts (SDXL's extra embeddings) win over SD1's.

/// (architecture, sets of tensor names that identify it; any one complete set decides).
const ARCHITECTURES: &[(&str, &[&[&str]])] = &[
    ("flux", &[&["double_blocks.0.img_attn.proj.weight"], &["transformer_blocks.0.attn.norm_added_k.weight"]]),
    ("sd3", &[&["joint_blocks.0.x_block.attn.qkv.weight"], &["transformer_blocks.0.attn.add_q_proj.weight"]]),
    ("ltxv", &[&["adaln_single.emb.timestep_embedder.linear_2.weight", "caption_projection.linear_2.weight"]]),
    ("wan", &[&["blocks.0.self_attn.norm_q.weight", "text_embedding.2.weight", "head.modulation"]]),
    (
        "sdxl",
        &[
            &["down_blocks.0.downsamplers.0.conv.weight", "add_embedding.linear_1.weight"],
            &["input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "label_emb.0.0.weight"],
        ],
    ),
    (
        "sd1",
        &[&["down_blocks.0.downsamplers.0.conv.weight"], &["input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight"]],
    ),
];

/// Prefixes checkpoints put in front of the diffusion model's own names.
const PREFIXES: &[&str] = &["model.diffusion_model.", "model.", "net.", ""];

/// The architecture and the names that decided it; `None` when no set matches.
pub fn detect<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<(&'static str, String)> {
    let present =
        |wanted: &str| names.clone().into_iter().any(|n| PREFIXES.iter().any(|p| n.strip_prefix(p) == Some(wanted)));
    for (arch, sets) in ARCHITECTURES {
        for set in *sets {
            if set.iter().all(|n| present(n)) {
                return Some((arch, set.join(", ")));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_complete_name_sets() {
        let sd1 = ["down_blocks.0.downsamplers.0.conv.weight", "conv_in.weight"];
        assert_eq!(detect(sd1).unwrap().0, "sd1");
        let sdxl = ["down_blocks.0.downsamplers.0.conv.weight", "add_embedding.linear_1.weight"];
        assert_eq!(detect(sdxl).unwrap().0, "sdxl");
        assert_eq!(detect(["model.diffusion_model.double_blocks.0.img_attn.proj.weight"]).unwrap().0, "flux");
        assert_eq!(detect(["blocks.0.attn.qkv.weight"]), None);
    }
}
